"""Helpers shared by the benchmark scripts: ISIC 2020's patient structure and a synthetic image set that follows it,
stage timing with per-stage peak memory, and the machine line. Imports neither torch nor fastai at module level."""
from __future__ import annotations
import functools, multiprocessing as mp, os, platform, re, sys, threading, time, zlib
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np, pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
try: import isic_siamese  # noqa: F401
except ImportError: sys.path.insert(0, str(ROOT))  # an uninstalled checkout (the GPU machine): use its isic_siamese/

META = ROOT.parent/'shared'/'data'/'isic2020_meta'/'ISIC_2020_Training_GroundTruth.csv'

# ISIC 2020's training table by patient, `melanomas: 'images:patients ...'`: 2,056 patients, 33,126 images, 584 melanomas.
# `patient_profile` recomputes it from the table; `stand_in_table` rebuilds a table with it where the table is absent.
ISIC2020_PATIENTS = {
    0: '2:1 3:234 4:148 5:92 6:70 7:81 8:30 9:66 10:34 11:34 12:57 13:53 14:62 15:52 16:34 17:38 18:24 19:36 20:39 21:29 22:36 '
       '23:34 24:18 25:26 26:17 27:13 28:16 29:20 30:17 31:10 32:9 33:11 34:18 35:12 36:10 37:10 38:15 39:5 40:10 41:7 42:10 '
       '43:3 44:6 45:8 46:3 47:3 48:5 49:3 50:4 51:3 52:7 53:1 54:3 55:1 56:1 58:2 59:3 60:1 61:1 63:1 64:2 66:1 67:1 70:3 '
       '71:2 72:2 73:1 74:2 78:1 84:1 87:1 91:1 92:2 98:1 100:1 102:4 104:1 114:1 115:3',
    1: '3:52 4:31 5:21 6:13 7:15 8:9 9:8 10:10 11:6 12:7 13:10 14:5 15:13 16:6 17:10 18:7 19:9 20:4 21:9 22:4 23:9 24:5 25:2 '
       '26:2 27:3 28:3 29:7 30:4 32:2 33:2 34:2 35:5 37:3 38:2 39:1 41:1 42:2 43:1 45:2 47:1 50:1 52:1 53:1 55:1 58:1 65:1 '
       '83:1 85:1 101:1 102:1 115:1',
    2: '3:9 4:7 5:5 6:1 7:3 8:3 9:3 10:2 11:1 12:2 14:4 15:5 16:1 17:1 18:1 19:1 21:3 22:2 24:1 25:2 26:1 27:3 31:1 32:2 35:2 '
       '37:2 38:1 39:1 40:1 42:1 44:1 46:1 48:1 50:1 53:1 60:1 76:1',
    3: '3:1 4:2 5:1 6:1 7:2 9:1 11:1 12:1 13:2 15:2 17:1 21:1 22:1 27:1 36:1 41:1 48:1',
    4: '5:1 7:1 13:1 20:1 66:1', 5: '8:1 23:1', 6: '13:1', 8: '42:1'}


def profile_counts(profile:dict=ISIC2020_PATIENTS) -> dict:
    "`{melanomas: {images: patients}}` as integers, from the string form of `ISIC2020_PATIENTS`."
    return {m: {int(k): int(c) for k, c in (kc.split(':') for kc in s.split())} for m, s in profile.items()}

def patient_profile(table:pd.DataFrame) -> dict:
    "`{melanomas: {images: patients}}` of a label table with `patient_id` and `target` columns."
    prof = {}
    for (k, m), c in table.groupby('patient_id').target.agg(['size', 'sum']).value_counts().sort_index().items():
        prof.setdefault(int(m), {})[int(k)] = int(c)
    return prof

def stand_in_table(seed:int=0) -> pd.DataFrame:
    "A label table in ISIC 2020's format with its exact patient structure (`ISIC2020_PATIENTS`) and made-up ids."
    rng, rows, p = np.random.default_rng(seed), [], 0
    for m, sizes in profile_counts().items():
        for k, count in sizes.items():
            for _ in range(count):
                for t in rng.permutation([1]*m + [0]*(k - m)):
                    rows.append(dict(image_name=f'ISIC_{len(rows):07d}', patient_id=f'IP_{p:07d}', sex=rng.choice(['male', 'female']),
                                     age_approx=int(rng.integers(4, 17))*5, anatom_site_general_challenge='torso',
                                     diagnosis='melanoma' if t else 'unknown', benign_malignant='malignant' if t else 'benign', target=int(t)))
                p += 1
    return pd.DataFrame(rows)

def isic2020_table(meta=META) -> tuple[pd.DataFrame, str]:
    "ISIC 2020's training label table read from `meta`, else (None, or the default path absent) `stand_in_table()`; and which of the two it is."
    if meta and Path(meta).exists(): return pd.read_csv(meta), f'ISIC 2020 label table ({Path(meta).name})'
    if meta and Path(meta) != META: raise FileNotFoundError(f"{meta}: no such label table; give ISIC 2020's training table, or 'none' for the stand-in")
    return stand_in_table(), "stand-in with ISIC 2020's patient structure (the label table was not found)"

def patient_order(table:pd.DataFrame, seed:int=0) -> list:
    "Patient ids ordered so that every prefix samples the patients evenly by melanomas and images per patient."
    g = table.groupby('patient_id').target.agg(['size', 'sum'])
    g['tie'] = np.random.default_rng(seed).random(len(g))
    ranked = g.sort_values(['sum', 'size', 'tie']).index
    bits = max(1, (len(ranked) - 1).bit_length())  # visit the sorted list at bit-reversed ranks: a nested systematic sample
    return list(ranked[np.argsort([int(f'{i:0{bits}b}'[::-1], 2) for i in range(len(ranked))])])

def isic2020_subset(table:pd.DataFrame, n:int, seed:int=0) -> pd.DataFrame:
    "The rows of the whole patients (a prefix of `patient_order`) whose images number closest to `n`; all rows when n >= len(table)."
    if n >= len(table): return table.reset_index(drop=True)
    order = patient_order(table, seed)
    total = table.groupby('patient_id').size()[order].cumsum().values
    keep = set(order[:int(np.abs(total - n).argmin()) + 1])
    return table[table.patient_id.isin(keep)].reset_index(drop=True)

def structure(table:pd.DataFrame) -> dict:
    "Size, patients, melanomas and images per patient of a label table."
    per = table.groupby('patient_id').target.agg(['size', 'sum'])
    return dict(images=len(table), patients=len(per), melanomas=int(table.target.sum()), melanoma_patients=int((per['sum'] > 0).sum()),
                images_per_patient_mean=round(float(per['size'].mean()), 2), images_per_patient_median=float(per['size'].median()),
                images_per_patient_max=int(per['size'].max()))


def _draw(job):
    "Worker: draw the images of `rows` that are not on disk yet (a patient's images share a skin tone, as in `make_demo_data`)."
    from isic_siamese.data import draw_lesion, _SKIN
    rows, folder, px, seed = job
    for name, patient, target in rows:
        f = folder/f'{name}.jpg'
        if f.exists(): continue
        pr = np.random.default_rng([seed, zlib.crc32(patient.encode())])
        skin = np.clip(_SKIN[pr.integers(len(_SKIN))] + pr.normal(0, 6, 3), 0, 255)
        img = draw_lesion(np.random.default_rng([seed, zlib.crc32(name.encode()), 1]), px, bool(target), skin)
        tmp = f.with_name(f'.{name}.{os.getpid()}.part')
        img.save(tmp, format='JPEG', quality=92)
        os.replace(tmp, f)  # atomic: a stopped run leaves no half-written image
    return len(rows)

def synthesize(table:pd.DataFrame, root, px:int=256, seed:int=0, workers:int|None=None, name:str|None=None) -> Path:
    """Write `table` as an ISIC 2020-layout data set: `root/NAME.csv` and a synthetic lesion per row in `root/train/` at `px` pixels,
    drawn by the library's `draw_lesion` in `workers` processes. Images already on disk are kept, so a rerun draws nothing.
    Returns the csv path (read it with `read_isic(root, csv=...)`)."""
    import isic_siamese.data  # noqa: F401  (imported once here, inherited by the forked workers)
    root = Path(root); folder = root/'train'; folder.mkdir(parents=True, exist_ok=True)
    todo = [r for r in zip(table.image_name, table.patient_id, table.target) if not (folder/f'{r[0]}.jpg').exists()]
    if todo:
        t, workers = time.time(), workers or os.cpu_count() or 1
        chunks = [(todo[i::workers*4], folder, px, seed) for i in range(workers*4)]
        ctx = mp.get_context('fork' if 'fork' in mp.get_all_start_methods() else 'spawn')  # fork: workers skip re-importing torch
        with ProcessPoolExecutor(workers, mp_context=ctx) as ex: n = sum(ex.map(_draw, [c for c in chunks if c[0]]))
        print(f'drew {n} synthetic {px} px lesions into {folder} in {time.time() - t:.0f} s ({workers} processes)', flush=True)
    csv = root/f'{name or f"isic2020_{len(table)}"}.csv'
    table.to_csv(csv, index=False)
    return csv


def _status() -> dict:
    "VmRSS, VmHWM, RssAnon and RssFile of this process in MiB (Linux), else {}."
    try: text = Path('/proc/self/status').read_text()
    except OSError: return {}
    return {k: int(v)/1024 for k, v in re.findall(r'^(VmRSS|VmHWM|RssAnon|RssFile):\s+(\d+) kB', text, re.M)}

def _reset_peak() -> bool:
    "Reset this process's peak resident set (VmHWM) through /proc/self/clear_refs (Linux >= 4.0); False where refused."
    try: Path('/proc/self/clear_refs').write_text('5'); return True
    except OSError: return False


class StageClock:
    """Wall time and peak memory of named stages that may nest: a stage's time and peaks are its own, excluding stages inside it.
    Peak RSS is exact where the kernel lets us reset VmHWM at each stage boundary (else the sampled VmRSS);
    peak private memory (RssAnon) and file-backed memory (RssFile: pages of memory-mapped files such as the image cache,
    reclaimable by the kernel) are sampled every `interval` seconds."""
    def __init__(self, interval:float=0.01):
        self.stats, self.stack, self.lock = {}, [], threading.Lock()
        self.exact = _reset_peak()
        self.baseline = _status()
        self._t = time.perf_counter()
        self._stop = threading.Event()
        threading.Thread(target=self._sample, args=(interval,), daemon=True).start()

    def _sample(self, interval):
        while not self._stop.wait(interval):
            s = _status()
            with self.lock:
                if self.stack and s: self._peak(self.stack[-1], s)

    def _peak(self, name, s):
        st = self.stats[name]
        for k, src in (('peak_anon_mib', 'RssAnon'), ('peak_file_mib', 'RssFile'), ('peak_rss_mib', 'VmRSS')):
            st[k] = max(st[k], s.get(src, 0))

    def _boundary(self):
        "Close the running segment: charge its time and exact peak to the innermost stage, start a new one."
        now = time.perf_counter()
        if self.stack:
            s = _status(); st = self.stats[self.stack[-1]]
            st['seconds'] += now - self._t
            self._peak(self.stack[-1], s)
            if self.exact: st['peak_rss_mib'] = max(st['peak_rss_mib'], s.get('VmHWM', 0))
        if self.exact: _reset_peak()
        self._t = now

    @contextmanager
    def __call__(self, name:str):
        "Time the block as stage `name` (repeated entries add up)."
        with self.lock:
            self._boundary()
            self.stats.setdefault(name, dict(seconds=0., calls=0, peak_rss_mib=0., peak_anon_mib=0., peak_file_mib=0.))['calls'] += 1
            self.stack.append(name)
        try: yield
        finally:
            with self.lock: self._boundary(); self.stack.pop()

    @contextmanager
    def wrap(self, owner, attr:str, name:str):
        "Time every call of `owner.attr` (a module function or a class's method) as stage `name` inside the block."
        orig = getattr(owner, attr)
        @functools.wraps(orig)
        def timed(*args, **kwargs):
            with self(name): return orig(*args, **kwargs)
        setattr(owner, attr, timed)
        try: yield
        finally: setattr(owner, attr, orig)
        if name not in self.stats:
            raise RuntimeError(f"{getattr(owner, '__name__', owner)}.{attr} was never called: the library's call path changed; update the benchmark's stages")

    def close(self) -> dict:
        "Stop sampling; the stats by stage, rounded."
        self._stop.set()
        return {n: {k: round(v, 3) if k == 'seconds' else round(v) if isinstance(v, float) else v for k, v in st.items()}
                for n, st in self.stats.items()}


def machine() -> str:
    "One line naming the device, CPU, cores, memory, load at start and software."
    import torch
    cpu = next(iter(re.findall(r'^model name\s*:\s*(.+)$', _read('/proc/cpuinfo'), re.M)), '') or platform.processor() or platform.machine()
    mem = re.findall(r'^MemTotal:\s+(\d+) kB', _read('/proc/meminfo'), re.M)
    gpu = f'{torch.cuda.get_device_name()}, ' if torch.cuda.is_available() else 'no GPU, '
    load = f', load {os.getloadavg()[0]:.1f} at start' if hasattr(os, 'getloadavg') else ''
    return (f"{gpu}{cpu}, {os.cpu_count()} cores{load}{f', {int(mem[0])/2**20:.0f} GiB RAM' if mem else ''}; "
            f"{platform.system()}, Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} CPU threads)")

def set_threads(n:int|None):
    "Use `n` CPU threads in torch (its default when None). One thread is far steadier on a machine shared with other jobs."
    if n:
        import torch
        torch.set_num_threads(n)

def _read(fname) -> str:
    try: return Path(fname).read_text()
    except OSError: return ''

def fmt_int(n) -> str: return f'{int(n):,}'
