"""Regenerate the notebooks' outputs from the code, then check their figures. From the project root:

    python tools/run_notebooks.py                           # every notebook in nbs/
    python tools/run_notebooks.py nbs/tutorial_colab.ipynb  # some of them
    python tools/run_notebooks.py --check                   # only the checks, on the notebooks as they are

1. Runs each notebook as `nbdev-test` does (nbdev's own `test_nb`: default flags, so no `slow`/`gpu`/
   `distributed` cells; `IN_TEST` set, hence each notebook's demo data and small settings), each in its own
   process, and writes a notebook's outputs back into it when all its cells pass (`nbdev-test --save`).
   Two differences: figures are stored as plain PNG at the figure's dpi, as Jupyter draws them, not in
   execnb's default `retina` format (twice the dpi: four times the pixels and bytes); and fastprogress's
   console progress bars are switched off (execnb is no notebook front end, so they would be stored as
   hundreds of text lines; fit's epoch tables are kept). nbs/index.ipynb runs last: its test reads the
   other notebooks' outputs.
2. The bare carriage returns fastprogress still writes with its bars off are removed from the text outputs,
   then `nbdev-clean` runs on each notebook: keeps the outputs, removes execution counts and metadata (test_nb
   stores cell timings there, which nbformat does not accept), as CI checks.
3. `figure_problems`: every cell that draws carries its image, each image is at most 200 KB and all notebooks
   together at most 8 MB. nbs/index.ipynb runs the same check in its tests.

Exit 1 when a notebook fails or a check fails.
"""
import argparse, base64, json, os, re, subprocess, sys, tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MAX_FIGURE, MAX_TOTAL = 200_000, 8_000_000  # bytes: one image; all notebooks together

# A cell draws when a line that is no comment, definition or lambda calls one of these:
# a `plot_*` function, fastai's show_batch/show_results/show_image(s) or a `.show(` method (fastai's types that
# show themselves), pyplot's drawing functions, a `.plot(` method (pandas, Recorder), or IPython's `Image` under
# the name the notebooks give it (IPImage).
DRAWS = re.compile(r"\b(?:plot_\w+|show_batch|show_results|show_images?)\(|\bplt\.(?:plot|imshow|subplots|figure|hist|scatter|bar|show)\("
                   r"|\.(?:plot|show)\(|\bIPImage\(")

def draws(src:str) -> bool:
    "Whether the code cell source `src` draws a figure (see `DRAWS`); a call in a string, a comment or a lambda (`test_fail(lambda: plot_x(...))`) draws nothing."
    lines = (re.sub(r"""(['"])(?:\\.|(?!\1).)*\1""", "''", l) for l in src.splitlines() if not l.lstrip().startswith(('#', 'def ', '@')))
    return any(DRAWS.search(re.sub(r'#.*$', '', l)) for l in lines if 'lambda' not in l)

def skip_flags(root='.') -> set:
    "The flags whose cells `nbdev-test` leaves out by default (`tst_flags` in pyproject.toml)."
    return set(tomllib.loads((Path(root)/'pyproject.toml').read_text())['tool']['nbdev'].get('tst_flags', '').split())

def _directives(src:str) -> dict:
    "nbdev's `#| name value` directives at the top of a cell source."
    out = {}
    for l in src.splitlines():
        m = re.match(r'#\|\s*([\w-]+):?\s*(.*)', l.strip())
        if not m: break
        out[m[1]] = m[2].strip()
    return out

def _images(cell) -> list:
    "Decoded bytes of every PNG output of `cell`."
    return [base64.b64decode(''.join(o['data']['image/png'])) for o in cell.get('outputs', [])
            if o.get('output_type') in ('display_data', 'execute_result') and 'image/png' in o.get('data', {})]

def figure_problems(nbs, flags=None) -> list:
    "One line per problem in notebooks `nbs`: a drawing cell `nbdev-test` runs with no image, an image over 200 KB, all over 8 MB."
    nbs, problems, total = [Path(nb) for nb in nbs], [], 0
    if flags is None: flags = skip_flags(nbs[0].resolve().parent.parent) if nbs else set()
    for nb in nbs:
        total += nb.stat().st_size
        for i, c in enumerate(json.loads(nb.read_text())['cells']):
            if c['cell_type'] != 'code': continue
            src, d = ''.join(c['source']), _directives(''.join(c['source']))
            imgs = _images(c)
            for n in imgs:
                if len(n) > MAX_FIGURE: problems.append(f"{nb.name} cell {i} ({c.get('id')}): a figure of {len(n)/1e3:.0f} KB, over {MAX_FIGURE/1e3:.0f} KB")
            runs = not (flags & d.keys()) and d.get('eval', 'true').lower() != 'false'
            if runs and not {'export', 'exporti', 'exports'} & d.keys() and draws(src) and not imgs:
                problems.append(f"{nb.name} cell {i} ({c.get('id')}): draws a figure but has no image output: run python tools/run_notebooks.py")
    if total > MAX_TOTAL: problems.append(f"the notebooks total {total/1e6:.1f} MB, over {MAX_TOTAL/1e6:.0f} MB")
    return problems

RUN_ONE = """
import functools, sys, nbdev.test as t, fastprogress.fastprogress as fp
from execnb.shell import CaptureShell
from nbdev.config import get_config
t.CaptureShell = functools.partial(CaptureShell, mpl_format='png')
fp.NO_BAR, fp.ConsoleProgressBar.fill = True, ''  # the notebook runs in this process: no progress bars in the outputs (epoch tables stay)
cfg = get_config()
flags = cfg.tst_flags.split() if isinstance(cfg.tst_flags, str) else cfg.tst_flags
ok, secs = t.test_nb(sys.argv[1], skip_flags=flags, basepath=cfg.config_path, save=True, cell_timeout=int(cfg.get('cell_timeout', 600)))
print(f"{sys.argv[1]}: {'outputs written' if ok else 'FAILED, outputs not written'} ({secs:.0f} s)", flush=True)
sys.exit(0 if ok else 1)
"""

def notebooks(root='.') -> list:
    "The notebooks of `root`/nbs that nbdev-test runs (names not starting with `_` or `.`)."
    return sorted(p for p in (Path(root)/'nbs').glob('*.ipynb') if not p.name.startswith(('_', '.')))

def drop_carriage_returns(nb):
    "Remove the bare carriage returns that fastprogress still writes with its bars off from the stream outputs of notebook `nb`; drop outputs left empty."
    d = json.loads(Path(nb).read_text())
    for c in d['cells']:
        if c['cell_type'] != 'code': continue
        for o in c.get('outputs', []):
            if o.get('output_type') == 'stream': o['text'] = ''.join(o['text']).replace('\r', '').splitlines(keepends=True)
        c['outputs'] = [o for o in c.get('outputs', []) if o.get('output_type') != 'stream' or o['text']]
    Path(nb).write_text(json.dumps(d, indent=1, ensure_ascii=False) + '\n')

def run_notebook(nb) -> bool:
    "Execute notebook `nb` as `nbdev-test --save` does, in a new process, figures as plain PNG, then `nbdev-clean` it; whether it passed."
    ok = subprocess.run([sys.executable, '-c', RUN_ONE, str(Path(nb).resolve())]).returncode == 0
    if ok: drop_carriage_returns(nb)
    subprocess.run(['nbdev-clean', '--fname', str(nb)], check=True)  # also drops the timings test_nb stores as cell metadata (invalid nbformat)
    return ok

def run_notebooks(paths=(), jobs:int|None=None) -> bool:
    "Execute `paths` (every notebook of nbs/ when empty) with `run_notebook`, `jobs` at a time, index.ipynb last."
    paths = [Path(p) for p in paths] or notebooks()
    last = [p for p in paths if p.name == 'index.ipynb']
    with ThreadPoolExecutor(jobs or os.cpu_count()) as ex: ok = all(list(ex.map(run_notebook, [p for p in paths if p not in last])))
    return all([run_notebook(p) for p in last]) and ok

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('notebooks', nargs='*', help='notebooks to run (default: every notebook in nbs/)')
    ap.add_argument('--check', action='store_true', help='only check the figures of the notebooks as they are')
    ap.add_argument('--jobs', type=int, default=None, help='notebooks run at once (default: the number of CPUs)')
    a = ap.parse_args()
    ok = a.check or run_notebooks(a.notebooks, a.jobs)
    if not ok: print('some notebooks failed (see above): their outputs were not written')
    problems = figure_problems(notebooks())
    print('\n'.join(problems) or 'figures: every drawing cell has its image, each <= 200 KB, notebooks <= 8 MB')
    sys.exit(0 if ok and not problems else 1)
