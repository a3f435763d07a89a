"""Full-size simulation: every stage of a run at 3k, 10k and ISIC 2020's 33,126 images, with time and peak memory per stage.

Data: one synthetic lesion (the library's `draw_lesion`, 256 px JPEG) per row of ISIC 2020's training label table,
../shared/data/isic2020_meta/ISIC_2020_Training_GroundTruth.csv (a stand-in with its exact per-patient structure
when it is absent). Smaller sizes take whole patients in an order that samples them evenly by melanomas and images
per patient, so 3k and 10k keep the real images-per-patient and melanoma structure; 33,126 is the whole table, and
each size's patients include the smaller ones'. Images are drawn once, in parallel, and kept in --root for reruns.

Stages, each the library's own call: `read_isic`, `split_groups`, `cache_images` (which `recipe_learner` then reuses),
`recipe_learner` (loaders and learner), `fit_and_evaluate` for one epoch (training epoch, validation pass and epoch end
with its checkpoint, embedding of every image by `embed`, scoring in `evaluate`, its training plot), and
`export_predictor`. The recipe is
`Recipe(epochs=1)`: arch 'small', 64 px; any recipe option changes it.

Memory: each size runs in a fresh process; inside it each stage's peak RSS is its own (VmHWM is reset at every stage
boundary through /proc/self/clear_refs), and private memory (RssAnon) and pages of memory-mapped files (RssFile: the
image cache, reclaimable) are sampled every 10 ms. Growth columns compare the largest size with the smallest:
time x / N x = 1 is linear; 'private +' is the growth of private memory, to compare with the embeddings' own size.

    python bench/scale.py                                  # 3,000, 10,000 and 33,126 images
    python bench/scale.py --sizes 3000 10000 --json bench/out/scale.json
    python bench/scale.py --smoke                          # seconds: 900 and 1,200 images at 64 px, checks included
"""
import json, multiprocessing as mp, os, shutil, sys, tempfile, time
from dataclasses import asdict
from pathlib import Path

from common import HERE, META, StageClock, fmt_int, isic2020_subset, isic2020_table, machine, patient_profile, profile_counts, set_threads, structure, synthesize
from isic_siamese.experiment import Recipe, cli_errors, markdown_table, recipe_parser

STAGES = ('read', 'split', 'cache build', 'loaders + learner', 'train epoch', 'validation + checkpoint', 'embed', 'score', 'plots', 'export')


def run_stages(root, recipe:Recipe, workdir) -> tuple:
    "Run every stage of `recipe` on data folder `root`, timed by a `StageClock`: (results, learner, split table). Caches and the run go to `workdir`."
    from fastai.learner import Learner, defaults
    from fastai.callback.progress import ProgressCallback
    import isic_siamese.eval as evaluation, isic_siamese.experiment as experiment
    from isic_siamese.data import cache_images, read_isic, split_groups, default_cache_dir
    from isic_siamese.eval import export_predictor
    defaults.callbacks = [c for c in defaults.callbacks if c is not ProgressCallback]  # no console progress bars in the log
    r, workdir = recipe, Path(workdir)
    os.environ['ISIC_SIAMESE_CACHE'] = str(workdir/'cache')  # the library's default cache folder: lesion_dls finds the build below
    clock, t0 = StageClock(), time.perf_counter()
    with clock('read'): df = read_isic(root, **r.kwargs_for(read_isic))
    with clock('split'): df = split_groups(df, **r.kwargs_for(split_groups))
    with clock('cache build'):
        cache = cache_images(df, r.size, colour_constancy=r.colour_constancy, progress=False)
    with clock('loaders + learner'): learn = experiment.recipe_learner(df, r, workdir/'run', verbose=False)
    with (clock.wrap(Learner, '_do_fit', 'validation + checkpoint'), clock.wrap(Learner, '_do_epoch_train', 'train epoch'),
          clock.wrap(experiment, 'evaluate', 'score'), clock.wrap(evaluation, 'embed', 'embed'), clock.wrap(experiment, 'plot_training', 'plots')):
        ev, _ = experiment.fit_and_evaluate(learn, df, verbose=False)
    with clock('export'): predictor = export_predictor(learn, ev, workdir/'run'/'predictor.pkl')
    stats, wall = clock.close(), time.perf_counter() - t0
    caches = list(default_cache_dir().glob('*.npy'))
    assert caches == [cache.fname], f'lesion_dls did not reuse the timed cache build: {caches}'
    n = df.split.value_counts().to_dict()
    n_tv, n_all = n.get('train', 0) + n.get('valid', 0), n.get('train', 0) + n.get('valid', 0) + n.get('test', 0)
    images = {'read': len(df), 'split': len(df), 'cache build': n_all, 'train epoch': n['train']//r.bs*r.bs,
              'validation + checkpoint': n['valid'], 'embed': n_all, 'score': n.get('valid', 0) + n.get('test', 0)}
    return dict(n=len(df), split=n, stages=stats, wall_s=round(wall, 3), images=images, baseline_mib={k: round(v) for k, v in clock.baseline.items()},
                exact_peak=clock.exact, cache_mib=round(cache.fname.stat().st_size/2**20),
                predictor_mib=round(predictor.stat().st_size/2**20, 1), embeddings_mib=round(n_all*r.emb_dim*4/2**20, 1),
                test_auc=round(ev.metrics['auc'], 4)), learn, df


def measure(root, csv, recipe:Recipe, keep:bool=False, threads:int|None=None) -> dict:
    "`run_stages` on `root` with label table `csv` in a fresh working folder (removed unless `keep`), with `threads` torch CPU threads."
    set_threads(threads)
    workdir = Path(tempfile.mkdtemp(prefix='isic_scale_'))
    try: return run_stages(root, recipe.replace(csv=str(csv)), workdir)[0] | dict(workdir=str(workdir) if keep else None)
    finally:
        if not keep: shutil.rmtree(workdir, ignore_errors=True)


def _run(args): return measure(*args)


def tables(results:list, recipe:Recipe) -> str:
    "Markdown tables of time, images/s and peak memory per stage and size, with growth from the smallest to the largest size."
    import pandas as pd
    first, last = results[0], results[-1]
    nx = last['n']/first['n']
    cols = [fmt_int(r['n']) for r in results]
    time_rows, mem_rows = {}, {}
    for s in STAGES:
        t = [r['stages'][s]['seconds'] for r in results]
        cells = [f"{x:.2f} s" + (f" · {r['images'][s]/x:,.0f}/s" if s in r['images'] and x > 0 else '') for x, r in zip(t, results)]
        growth = t[-1]/t[0] if t[0] > 0 else float('nan')
        time_rows[s] = [*cells, f'{growth:.1f}', f'{growth/nx:.2f}'] if len(results) > 1 else cells
        rss = [f"{r['stages'][s]['peak_rss_mib']:,}" for r in results]
        anon = [f"{r['stages'][s]['peak_anon_mib']:,}" for r in results]
        mapped = [f"{r['stages'][s]['peak_file_mib']:,}" for r in results]
        d_anon = last['stages'][s]['peak_anon_mib'] - first['stages'][s]['peak_anon_mib']
        mem_rows[s] = [*rss, *anon, *mapped] + ([f'{d_anon:+,}'] if len(results) > 1 else [])
    tot = [sum(r['stages'][s]['seconds'] for s in STAGES) for r in results]
    time_rows['total'] = [f'{x:.1f} s · {r["n"]/x:,.0f}/s' for x, r in zip(tot, results)] + ([f'{tot[-1]/tot[0]:.1f}', f'{tot[-1]/tot[0]/nx:.2f}'] if len(results) > 1 else [])
    growth_cols = [f'time x (N x {nx:.1f})', 'time x / N x'] if len(results) > 1 else []
    t_df = pd.DataFrame.from_dict(time_rows, orient='index', columns=cols + growth_cols).rename_axis('stage')
    m_cols = [f'RSS @{c}' for c in cols] + [f'private @{c}' for c in cols] + [f'mapped @{c}' for c in cols]
    m_df = pd.DataFrame.from_dict(mem_rows, orient='index', columns=m_cols + ([f'private + {cols[0]}→{cols[-1]}'] if len(results) > 1 else [])).rename_axis('stage (MiB)')
    d_df = pd.DataFrame({c: [fmt_int(r['structure']['patients']), fmt_int(r['structure']['melanomas']), fmt_int(r['structure']['melanoma_patients']),
                             f"{r['structure']['images_per_patient_mean']:.1f}", ' / '.join(fmt_int(r['split'].get(s, 0)) for s in ('train', 'valid', 'test')),
                             f"{r['cache_mib']:,}", f"{r['embeddings_mib']:,}", f"{r['predictor_mib']:.1f}", f"{r['test_auc']:.3f}"]
                         for c, r in zip(cols, results)},
                        index=['patients', 'melanomas', 'patients with melanoma', 'images per patient (mean)', 'train / valid / test',
                               f'cache file, {recipe.size} px (MiB)', f'embeddings, N x {recipe.emb_dim} float32 (MiB)', 'predictor file (MiB)',
                               'test AUC (synthetic, 1 epoch)']).rename_axis('images')
    base = first['baseline_mib']
    return '\n'.join([markdown_table(d_df), 'Time per stage (images/s where the stage handles images):', '', markdown_table(t_df),
                      f"Peak memory per stage in MiB: RSS ({'exact: VmHWM reset per stage' if first['exact_peak'] else 'sampled VmRSS'}), "
                      f"private (RssAnon, sampled) and mapped files (RssFile, sampled: shared libraries and the memory-mapped image cache, reclaimable). "
                      f"After imports: RSS {base.get('VmRSS', 0):,}, private {base.get('RssAnon', 0):,}.", '', markdown_table(m_df)])


def main(argv=None):
    p = recipe_parser('scale.py', __doc__.split('\n')[0], Recipe(epochs=1))
    p.add_argument('--sizes', type=int, nargs='+', default=[3000, 10000, 33126], help='numbers of images (whole patients: each run is the closest size)')
    p.add_argument('--meta', default=str(META), help="ISIC 2020 label table whose patients and labels the data follows; 'none' for the stand-in")
    p.add_argument('--root', default=str(HERE/'out'/'isic2020_sim'), help='folder for the synthetic images, kept for reruns')
    p.add_argument('--px', type=int, default=256, help='side of the synthetic images in pixels (the Kaggle copies are 256)')
    p.add_argument('--workers', type=int, default=None, help='processes drawing images (all cores by default)')
    p.add_argument('--json', default=None, help='also write the results here')
    p.add_argument('--keep', action='store_true', help='keep each run folder (cache, checkpoints, predictor)')
    p.add_argument('--threads', type=int, default=None, help="torch CPU threads (torch's default when omitted; 1 with --smoke)")
    p.add_argument('--smoke', action='store_true', help='a seconds-long check: 900 and 1,200 images at 64 px in a temporary folder')
    a = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix='isic_scale_smoke_') if a.smoke else None
    if a.smoke: a.sizes, a.px, a.root, a.threads = [900, 1200], 64, tmp, a.threads or 1
    try:
        with cli_errors('scale.py', a.debug): run(a)
    finally:
        if tmp: shutil.rmtree(tmp, ignore_errors=True)


def run(a):
    "The benchmark of `main`'s parsed arguments `a`."
    recipe = Recipe.from_args(a)
    set_threads(a.threads)
    table, kind = isic2020_table(None if a.meta == 'none' else a.meta)
    if kind.startswith('ISIC') and patient_profile(table) != profile_counts():
        assert not a.smoke, 'the label table no longer matches ISIC2020_PATIENTS in bench/common.py'
        print(f'note: {a.meta} differs from the patient structure recorded in bench/common.py (ISIC2020_PATIENTS)', file=sys.stderr)
    root = Path(a.root)/('isic2020' if kind.startswith('ISIC') else 'stand_in')/f'{a.px}px'
    subsets = [isic2020_subset(table, n) for n in sorted(a.sizes)]
    csvs = [synthesize(s, root, a.px, workers=a.workers) for s in subsets]  # the largest set holds the others' patients
    print(f'data: {root} ({kind})\nrecipe: {recipe}\n', flush=True)
    results, ctx = [], mp.get_context('spawn')
    for csv, sub in zip(csvs, subsets):
        with ctx.Pool(1) as pool: r = pool.map(_run, [(root, csv, recipe, a.keep, a.threads)])[0]  # fresh process: its own memory
        r['structure'] = structure(sub)
        results.append(r)
        print(json.dumps(dict(n=r['n'], splits=r['split'], test_auc=r['test_auc'], seconds={s: st['seconds'] for s, st in r['stages'].items()})), flush=True)
    out = f"machine: {machine()}\ndata: {kind}, synthetic {a.px} px lesions; recipe: arch={recipe.arch}, size={recipe.size}, bs={recipe.bs}, " \
          f"epochs={recipe.epochs}, loss={recipe.loss}, precision={recipe.precision}\n\n{tables(results, recipe)}"
    print('\n' + out)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(dict(machine=machine(), data=kind, recipe=asdict(recipe), sizes=a.sizes, results=results), indent=2))
    if a.smoke:
        for r in results:
            missing = [s for s in STAGES if s not in r['stages'] or r['stages'][s]['seconds'] <= 0]
            assert not missing, f'stages not timed: {missing}'
            assert all(r['stages'][s]['peak_rss_mib'] > 0 for s in STAGES), 'no peak memory measured'
            timed = sum(st['seconds'] for st in r['stages'].values())
            assert abs(timed - r['wall_s']) < 0.02*r['wall_s'] + 0.2, f"stages add up to {timed:.2f} s of {r['wall_s']:.2f} s"
        assert [r['n'] for r in results] == [len(s) for s in subsets]
        print('smoke: ok')


if __name__ == '__main__': main()
