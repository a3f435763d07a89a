"""GPU check: training and inference images/s of resnet18, resnet50 and efficientnet_b0 at 256 px, in fp32 and in bf16
autocast (fp16 where bf16 is unsupported), each with and without channels_last; the data path's images/s (the library's
cache and loaders, with workers); and one full ISIC 2020-sized run through the library, stage by stage.

All through the library: `siamese_learner` (fastai's loop, MixedPrecision, ChannelsLast, EMA), `lesion_dls` over the
`ImageCache` with `BalancedDL`, `embed`; `pretrained=False`, no network. Data: 33,126 synthetic 256 px lesions with ISIC
2020's patient and label structure (bench/scale.py; a stand-in with the same per-patient structure where the label
table is absent), drawn once in parallel and kept in --root. Training images/s time the step only (`before_batch` to
`after_batch`, synchronised), not the loader, over a fixed number of steps after warm-up steps; inference images/s
time the forward pass of `embed`. The full run is `fit_and_evaluate` for one epoch with arch resnet18 (bench/scale.py's
stages: 23,664 training and 4,729 validation images, then all 33,126 embedded and scored, and the predictor exported):
resnet18 is the benchmark encoder (`BENCHMARK`), and at 256 px its epoch takes seconds on a modern GPU, where
resnet50 or the toy 'small' encoder would either eat the budget or measure only the loader. Sized for at most 4 minutes
on one H100/H200-class GPU with 16 cores (estimated, not yet measured: drawing ~30-40 s, the full run ~40 s, the 12
model measurements ~1-1.5 min; a rerun reuses the images). Writes gpu.json and gpu.md to --out.

    python bench/gpu.py --out bench/out/gpu      # on a GPU machine
    python bench/gpu.py --smoke                   # CPU, seconds: the same code paths at 32 px, 2 timed steps (tests)

On a GPU machine that has torch, torchvision, timm, numpy, pandas, scikit-learn, scipy, matplotlib, seaborn, pillow,
pyyaml, requests, rich and cloudpickle but not fastai, fastcore, fastprogress, fasttransform, plum-dispatch or
pytorch-metric-learning, and no network: download the pure-Python wheels listed in bench/gpu_wheels.txt here
(`--platform any` refuses any wheel that is not pure Python), carry the folder over with the checkout, install it
beside the checkout there, and run from the checkout's root (its isic_siamese/ is imported without installing it):

    pip download --no-deps --only-binary=:all: --platform any --python-version 3.12 --implementation py \
        -d bench/out/wheels -r bench/gpu_wheels.txt                       # here: 8 wheels, 2.3 MB
    pip install --no-index --no-deps --target /tmp/pydeps bench/out/wheels/*.whl   # there
    PYTHONPATH=/tmp/pydeps python3 bench/gpu.py --out $OUT
"""
import argparse, gc, json, shutil, tempfile, time
from dataclasses import asdict
from pathlib import Path

from common import HERE, META, fmt_int, isic2020_subset, isic2020_table, machine, set_threads, structure, synthesize


def data_rate(dls, warmup:int, batches:int) -> dict:
    "Images/s of the training loader (cache, workers, transfer and batch transforms on the device) over `batches` after `warmup`."
    import torch
    sync = (lambda: torch.cuda.synchronize()) if dls.device.type == 'cuda' else (lambda: None)
    t0 = time.perf_counter(); it = iter(dls.train); next(it); first_s = time.perf_counter() - t0
    for _ in zip(range(warmup), it): pass
    sync(); t, n = time.perf_counter(), 0
    for _, (xb, _) in zip(range(batches), it): n += len(xb)
    sync(); secs = time.perf_counter() - t
    del it
    return dict(images_per_s=n/secs, images=n, first_batch_s=first_s, num_workers=dls.train.fake_l.num_workers)


def model_rates(dls, df, recipe, arch:str, precision:str, channels_last:bool, warmup:int, steps:int) -> dict:
    "Training and inference images/s of `arch` (data excluded) and peak device memory, through `siamese_learner` and `embed`."
    import torch
    from isic_siamese.train import siamese_learner
    from isic_siamese.eval import embed
    from profiling import StepProfile
    cuda = dls.device.type == 'cuda'
    fmt = 'channels_last' if channels_last else 'contiguous'
    learn = siamese_learner(dls, **(recipe.kwargs_for(siamese_learner) | dict(arch=arch, precision=precision, memory_format=fmt)))
    if cuda: torch.cuda.reset_peak_memory_stats()
    train = StepProfile(fine=False, skip=warmup, stop_after=steps)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, recipe.lr, cbs=train.callbacks)
    train_mib = torch.cuda.max_memory_allocated()/2**20 if cuda else None
    rows = df[df.split.eq('train')].iloc[:(warmup + steps + 1)*recipe.bs]  # cached images, as predict_lesions' test_dl
    infer = StepProfile(fine=True, skip=warmup + 1)
    with learn.no_bar(), learn.added_cbs(infer.callbacks): embed(learn, learn.dls.test_dl(rows, bs=recipe.bs))
    t, i = train.summary('train'), infer.summary('valid')
    res = dict(arch=arch, precision=precision, channels_last=channels_last, train_images_per_s=t['step_images_per_s'],
               train_step_ms=t['step_ms'], train_steps=t['batches'], infer_images_per_s=1e3*i['images']/i['ms']['forward'],
               infer_batches=i['batches'], peak_train_mib=None if train_mib is None else round(train_mib))
    del learn; gc.collect()
    if cuda: torch.cuda.empty_cache()
    return res


def step_profile(dls, recipe, warmup:int, steps:int):
    "The per-phase profile of `recipe`'s training step with the library's defaults for this device."
    from isic_siamese.train import siamese_learner
    from profiling import StepProfile
    learn = siamese_learner(dls, **recipe.kwargs_for(siamese_learner))
    prof = StepProfile(fine=True, skip=warmup, stop_after=steps)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, recipe.lr, cbs=prof.callbacks)
    return prof.summary('train')


def report(res:dict) -> str:
    "The Markdown report of `main`'s results."
    import pandas as pd
    from isic_siamese.experiment import Recipe, markdown_table
    from profiling import profile_table
    from scale import tables
    rows = {}
    for m in res['models']:
        base = next((b for b in res['models'] if b['arch'] == m['arch'] and b['precision'] == 'fp32' and not b['channels_last']), None)
        ratio = lambda k: f"{m[k]/base[k]:.2f}x" if base else '-'
        rows[(m['arch'], m['precision'], 'channels_last' if m['channels_last'] else 'contiguous')] = dict(
            train=f"{m['train_images_per_s']:,.0f}", train_x=ratio('train_images_per_s'), infer=f"{m['infer_images_per_s']:,.0f}",
            infer_x=ratio('infer_images_per_s'), mem=m['peak_train_mib'] if m['peak_train_mib'] is not None else '-')
    models = pd.DataFrame.from_dict(rows, orient='index', columns=['train', 'train_x', 'infer', 'infer_x', 'mem'])
    models.index = [' / '.join(i) for i in models.index]
    models.columns = ['train (img/s)', 'train vs fp32 contiguous', 'inference (img/s)', 'inference vs fp32 contiguous', 'peak GPU memory, training (MiB)']
    s, d = res['settings'], res['data_path']
    run = res['full_run']
    return '\n'.join([
        f"machine: {res['machine']}", '',
        f"{s['size']} px, batch {s['bs']}, {s['steps']} timed steps after {s['warmup']} warm-up steps, pretrained=False; "
        f"TF32: matmul {s['tf32_matmul']}, cuDNN {s['tf32_cudnn']}; cuDNN benchmark {s['cudnn_benchmark']}. "
        f"Training: the step without the loader (forward, loss, backward, optimizer, EMA); inference: the forward pass of `embed`.", '',
        markdown_table(models.rename_axis('model / precision / memory format')),
        *([f"Not measured within the {s['budget_s']:.0f} s budget: {', '.join(res['skipped'])}.", ''] if res['skipped'] else []),
        f"Data path (ImageCache + lesion_dls + BalancedDL, {d['num_workers']} workers, batch transforms on the device): "
        f"{d['images_per_s']:,.0f} images/s over {fmt_int(d['images'])} images (first batch after {d['first_batch_s']:.1f} s).", '',
        f"Full run, {fmt_int(run['n'])} images ({res['data']}), arch {s['epoch_arch']}, {s['size']} px, batch {s['bs']}, "
        f"precision {res['recipe']['precision']} ({res['hardware']['precision'] or 'fp32'}), channels_last {res['hardware']['channels_last']}:", '',
        tables([run], Recipe(**res['recipe'])), '',
        f"Training step of {s['epoch_arch']} by phase (library defaults for this device, synchronised at every phase boundary):", '',
        markdown_table(profile_table({s['epoch_arch']: res['profile']})),
        'Wall time: ' + ', '.join(f'{k} {v:.0f} s' for k, v in res['wall_s'].items()) + '.'])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default=str(HERE/'out'/'gpu'), help='folder for gpu.json and gpu.md')
    p.add_argument('--root', default=str(HERE/'out'/'isic2020_sim'), help='folder for the synthetic images, kept for reruns')
    p.add_argument('--meta', default=str(META), help="ISIC 2020 label table; 'none' for the stand-in with its patient structure")
    p.add_argument('--n', type=int, default=33126, help='images of the full run')
    p.add_argument('--size', type=int, default=256)
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--archs', nargs='+', default=['resnet18', 'resnet50', 'efficientnet_b0'])
    p.add_argument('--epoch-arch', default='resnet18', help='encoder of the full run')
    p.add_argument('--warmup', type=int, default=5, help='untimed steps before each measurement')
    p.add_argument('--steps', type=int, default=20, help='timed steps of each measurement')
    p.add_argument('--workers', type=int, default=None, help='processes drawing images (all cores by default)')
    p.add_argument('--threads', type=int, default=None, help="torch CPU threads (torch's default when omitted; 1 with --smoke)")
    p.add_argument('--budget', type=float, default=None, help='seconds after which the remaining model measurements are skipped and listed (200; none with --smoke)')
    p.add_argument('--smoke', action='store_true', help='CPU, seconds: 1,000 images at 32 px, batch 8, 2 steps, arch small for the full run')
    p.add_argument('--debug', action='store_true', help='show the full traceback of an error')
    a = p.parse_args(argv)
    from isic_siamese.experiment import cli_errors
    tmp = tempfile.mkdtemp(prefix='isic_gpu_smoke_') if a.smoke else None
    if a.smoke: a.n, a.size, a.bs, a.warmup, a.steps, a.epoch_arch, a.root, a.out, a.threads = 1000, 32, 8, 1, 2, 'small', tmp, tmp, a.threads or 1
    if a.budget is None: a.budget = 1e9 if a.smoke else 200
    try:
        with cli_errors('gpu.py', a.debug): run(a)
    finally:
        if tmp: shutil.rmtree(tmp, ignore_errors=True)


def run(a):
    "The GPU check of `main`'s parsed arguments `a`; gpu.json is rewritten after every measurement, so a stopped run keeps its figures."
    import torch
    from isic_siamese.data import hardware, lesion_dls
    set_threads(a.threads)
    hw = hardware()
    if hw.device.type != 'cuda' and not a.smoke: raise OSError('no CUDA device here; on a CPU run gpu.py --smoke')
    wall, t0 = {}, time.perf_counter()
    table, kind = isic2020_table(None if a.meta == 'none' else a.meta)
    sub = isic2020_subset(table, a.n)
    root = Path(a.root)/('isic2020' if kind.startswith('ISIC') else 'stand_in')/f'{a.size}px'
    csv = synthesize(sub, root, a.size, workers=a.workers)  # before any CUDA work: the drawing processes are forked
    wall['drawing'] = time.perf_counter() - t0

    from isic_siamese.experiment import Recipe
    from isic_siamese.pairs import BalancedDL
    from scale import run_stages
    recipe = Recipe(arch=a.epoch_arch, size=a.size, bs=a.bs, epochs=1, csv=str(csv))
    precisions = ['fp32'] + ([hw.precision] if hw.precision else [])  # the library's autocast (CUDA, or a CPU with bf16 instructions)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    res = dict(machine=machine(), data=kind, complete=False, recipe=asdict(recipe),
               hardware=dict(device=str(hw.device), num_workers=hw.num_workers, precision=hw.precision, channels_last=hw.channels_last),
               settings=dict(size=a.size, bs=a.bs, warmup=a.warmup, steps=a.steps, epoch_arch=a.epoch_arch, smoke=a.smoke, budget_s=a.budget,
                             tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32,
                             cudnn_benchmark=torch.backends.cudnn.benchmark),
               models=[], skipped=[], wall_s=wall)
    def save(): (out/'gpu.json').write_text(json.dumps(res, indent=2))
    work = Path(tempfile.mkdtemp(prefix='isic_gpu_'))
    try:
        t = time.perf_counter()
        full, learn, df = run_stages(root, recipe, work)
        del learn; gc.collect()  # its weights would count in the peak memory of every measurement below
        if hw.device.type == 'cuda': torch.cuda.empty_cache()
        res['full_run'] = full | dict(structure=structure(sub)); wall['full run'] = time.perf_counter() - t; save()

        t = time.perf_counter()
        dls = lesion_dls(df, dl_type=BalancedDL, dl_kwargs=[dict(pos_frac=recipe.pos_frac), {}], **recipe.kwargs_for(lesion_dls))  # reuses the cache
        res['data_path'] = data_rate(dls, a.warmup + hw.num_workers, 3*a.steps)  # past the workers' first batches
        wall['data path'] = time.perf_counter() - t; save()

        t = time.perf_counter()
        for arch in a.archs:
            for precision in precisions:
                for cl in (False, True):
                    if time.perf_counter() - t0 > a.budget: res['skipped'].append(f"{arch} / {precision} / {'channels_last' if cl else 'contiguous'}"); continue
                    res['models'].append(model_rates(dls, df, recipe, arch, precision, cl, a.warmup, a.steps))
                    wall['models'] = time.perf_counter() - t; save()
                    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in res['models'][-1].items()}), flush=True)
        t = time.perf_counter()
        res['profile'] = step_profile(dls, recipe, a.warmup, a.steps)
        wall['profile'] = time.perf_counter() - t
    finally: shutil.rmtree(work, ignore_errors=True)
    wall['total'] = time.perf_counter() - t0
    res['complete'] = True; save()
    md = report(res)
    (out/'gpu.md').write_text(md + '\n')
    print('\n' + md + f'\nwrote {out}/gpu.json and {out}/gpu.md')
    if a.smoke:
        models = res['models']
        assert len(models) == len(a.archs)*len(precisions)*2 and all(m['train_images_per_s'] > 0 and m['infer_images_per_s'] > 0 for m in models)
        assert res['data_path']['images_per_s'] > 0 and full['n'] == len(sub) and res['profile']['batches'] == a.steps
        print('smoke: ok')


if __name__ == '__main__': main()
