"""Training speed: a seed-style Siamese pipeline against isic_siamese's, on the same images, encoder and batch size.

(a) seed style, written here in plain PyTorch as the public ISIC Siamese notebooks do it: a Dataset that opens
    each JPEG with PIL and runs torchvision transforms per item, one random pair per image, both images of each
    pair through the encoder, contrastive loss, fp32.
(b) isic_siamese: images decoded once into the memory-mapped cache, augmentation on the batch on the training
    device, balanced batches, every image encoded once and all pairs of the batch used (supervised contrastive),
    with the library's per-device defaults (workers, pinned memory; AMP and channels_last on CUDA and on CPUs with
    bf16 instructions), or with settings changed (--variants: fp32 is the equal-precision comparison).

Each measurement runs in a fresh process, so peak memory is its own, and is repeated (--repeats, 3 by default) with
the two pipelines interleaved and their order alternated (A B, B A, A B, ...), so that a change in the load of a shared
machine hits both; the tables give the median with min-max, and the ratio of epoch times is computed pair by pair
(the baseline and isic_siamese runs of one repeat). isic_siamese's runs also profile its training step by phase
(data, forward, loss, backward, optimizer, EMA, metric; bench/profiling.py): on a CPU the profiler costs nothing and
rides along, on CUDA it synchronises at every phase boundary, so it gets one extra run per size instead.
A variant that compiles (`compiled`: `torch.compile`) first runs one untimed forward and backward, so its one-off
compilation is reported apart (warm-up seconds) and not counted in its epoch time.

    python bench/speed.py                        # ../shared/data/ham224 (demo data when absent), 512 images, 128 and 224 px
    python bench/speed.py --repeats 5 --threads 1  # steadier on a machine shared with other jobs
    python bench/speed.py --threads 1 --repeats 3 --variants fp32 bf16 bf16_channels_last   # the README's table
    python bench/speed.py --n 33126 --sizes 256 --data demo --skip-baseline   # GPU: a full ISIC 2020-sized epoch on synthetic images
"""
import argparse, json, multiprocessing as mp, os, random, resource, statistics, sys, tempfile, time
from pathlib import Path

from common import HERE, machine, set_threads


def _images(data, n, seed=0):
    "Paths and labels of `n` images of `data` (a folder in any supported layout, or 'demo'), both classes kept."
    from isic_siamese.data import read_isic, make_demo_data
    if data == 'demo' or not Path(data).exists():
        if data != 'demo': print(f"{data}: no such folder; measuring on the library's demo data instead", file=sys.stderr, flush=True)
        data = Path(tempfile.gettempdir())/f'isic_speed_demo_{n}'
        if not (data/'train.csv').exists(): make_demo_data(data, n_patients=(n + 9)//10, images_per_patient=10, size=256)  # once, not per run
    df = read_isic(data)
    return df.sample(n=min(n, len(df)), random_state=seed).reset_index(drop=True)


def _sync(device):
    import torch
    if device.type == 'cuda': torch.cuda.synchronize()


def _peak(device):
    import torch
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024  # MiB on Linux
    gpu = torch.cuda.max_memory_allocated()/2**20 if device.type == 'cuda' else None
    return dict(peak_rss_mib=round(rss), peak_gpu_mib=None if gpu is None else round(gpu))


def baseline(data, n, size, bs, seed=0, threads=None):
    "Seed-style PIL/torchvision pair pipeline: one epoch of N pairs (2N encoder passes)."
    import torch, torch.nn.functional as F, torchvision, torchvision.transforms as T
    from PIL import Image
    from isic_siamese.data import hardware
    set_threads(threads)
    torch.manual_seed(seed); random.seed(seed)
    hw = hardware()
    df = _images(data, n, seed)
    paths, labels = df.path.tolist(), df.label.tolist()
    by_class = {c: [p for p, l in zip(paths, labels) if l == c] for c in (0, 1)}
    tfm = T.Compose([T.Resize((size, size)), T.RandomHorizontalFlip(), T.RandomVerticalFlip(), T.RandomRotation(180),
                     T.ColorJitter(0.2, 0.2), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    class PairDataset(torch.utils.data.Dataset):
        def __len__(self): return len(paths)
        def __getitem__(self, i):
            same = random.random() < 0.5
            other = random.choice(by_class[labels[i] if same else 1 - labels[i]])
            load = lambda p: tfm(Image.open(p).convert('RGB'))
            return load(paths[i]), load(other), torch.tensor(float(same))

    dl = torch.utils.data.DataLoader(PairDataset(), batch_size=bs, shuffle=True, num_workers=hw.num_workers,
                                     pin_memory=hw.pin_memory, drop_last=True, persistent_workers=hw.num_workers > 0)
    t = time.time(); n_img = 0
    for a, b, _ in dl: n_img += len(a) + len(b)
    data_ips = n_img/(time.time() - t)

    body = torchvision.models.resnet18(num_classes=128).to(hw.device)
    opt = torch.optim.Adam(body.parameters(), 1e-3)
    def contrastive(ea, eb, same, margin=0.5):
        d = (ea - eb).norm(dim=1)
        return (same*d.pow(2) + (1 - same)*F.relu(margin - d).pow(2)).mean()
    body.train(); _sync(hw.device)
    t = time.time(); n_img = 0
    for a, b, same in dl:
        a, b, same = a.to(hw.device, non_blocking=True), b.to(hw.device, non_blocking=True), same.to(hw.device)
        loss = contrastive(F.normalize(body(a)), F.normalize(body(b)), same)
        opt.zero_grad(); loss.backward(); opt.step()
        n_img += len(a)
    _sync(hw.device)
    epoch_s = time.time() - t
    return dict(path='seed-style', size=size, n_images=n_img, encoder_passes=2*n_img, epoch_s=epoch_s,
                data_images_per_s=data_ips, model_images_per_s=2*n_img/epoch_s, **_peak(hw.device))


VARIANTS = dict(default={}, fp32=dict(precision='fp32', memory_format='contiguous'), contiguous=dict(memory_format='contiguous'),
                channels_last=dict(memory_format='channels_last'), bf16=dict(precision='bf16', memory_format='contiguous'),
                bf16_channels_last=dict(precision='bf16', memory_format='channels_last'),
                compiled=dict(compile=True))  # isic_siamese's settings per variant: the library's defaults for this device, or some changed


def warm_up(learn):
    "One untimed forward and backward of a training batch, so that torch.compile's one-off compilation is not counted in the epoch; weights, BatchNorm statistics and gradients left as they were."
    import copy
    state = copy.deepcopy(learn.model.state_dict())
    b = learn.dls.train.one_batch()
    learn.loss_func(learn.model(*b[:1]), *b[1:]).backward()
    learn.model.zero_grad(set_to_none=True)
    learn.model.load_state_dict(state)
    _sync(learn.dls.device)


def ours(data, n, size, bs, seed=0, threads=None, profile=False, variant='default'):
    "isic_siamese: decoded cache, batch augmentation on the device, in-batch pairs (N encoder passes); `profile` adds a `StepProfile`; `variant` names `VARIANTS` settings."
    import pandas as pd
    from fastai.vision.all import Callback
    from isic_siamese.data import hardware, lesion_dls, ImageCache
    from isic_siamese.pairs import BalancedDL
    from isic_siamese.train import siamese_learner
    from profiling import StepProfile
    set_threads(threads)
    hw = hardware()
    df = _images(data, n, seed)
    valid = df.groupby('label').head(bs//2).assign(split='valid')  # a token validation part, not timed
    df = pd.concat([df.assign(split='train'), valid], ignore_index=True)  # all N images train
    with tempfile.TemporaryDirectory(prefix='isic_speed_cache_') as cache_dir:
        t = time.time(); cache = ImageCache.build(df.path.unique(), size, cache_dir, progress=False); cache_s = time.time() - t
        dls = lesion_dls(df, size=size, bs=bs, aug='light', cache=cache, dl_type=BalancedDL, dl_kwargs=[dict(pos_frac=0.25), {}])

        _sync(hw.device); t = time.time(); n_img = 0
        for xb, yb in dls.train: n_img += len(xb)
        _sync(hw.device); data_ips = n_img/(time.time() - t)

        class TrainTimer(Callback):
            def before_train(self):
                t = time.time()
                if VARIANTS[variant].get('compile'): warm_up(self.learn)
                self.learn.warm_up_s = time.time() - t
                _sync(hw.device); self.t = time.time()
            def after_train(self): _sync(hw.device); self.learn.train_s = time.time() - self.t
        prof = StepProfile(fine=True, skip=min(1, len(dls.train) - 1)) if profile else None  # first batch: warm-up, unless the only one
        learn = siamese_learner(dls, arch='resnet18', loss='supcon', cbs=[TrainTimer(), *(prof.callbacks if prof else [])], **VARIANTS[variant])
        with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
        return dict(path='isic_siamese' if variant == 'default' else f'isic_siamese {variant}', size=size, n_images=n_img, encoder_passes=n_img, epoch_s=learn.train_s,
                    data_images_per_s=data_ips, model_images_per_s=n_img/learn.train_s, cache_build_s=cache_s, warm_up_s=learn.warm_up_s,
                    cache_mib=round(os.path.getsize(cache.fname)/2**20), precision=str(learn.mixed_precision.amp_mode.value) if hasattr(learn, 'mixed_precision') else None, channels_last=hasattr(learn, 'channels_last'),
                    num_workers=hw.num_workers, profile=prof.summary('train') if prof else None, **_peak(hw.device))


def _run(args):
    fn, kw = args
    return globals()[fn](**kw)


def _median(xs): return statistics.median(xs), min(xs), max(xs)

def _mmm(xs, fmt='.1f', unit=''):
    "median (min-max) of `xs`."
    m, lo, hi = _median(xs)
    return f'{m:{fmt}}{unit} ({lo:{fmt}}-{hi:{fmt}}{unit})' if len(xs) > 1 else f'{m:{fmt}}{unit}'

def _median_profile(profiles):
    "One `StepProfile.summary` of the per-phase medians of several runs."
    ms = {p: statistics.median(x['ms'][p] for x in profiles) for p in profiles[0]['ms']}
    images = statistics.median(x['images'] for x in profiles)
    step = sum(v for p, v in ms.items() if p != 'data')
    return dict(ms=ms, images=images, step_images_per_s=1e3*images/step)


def summary(results, sizes, skip_baseline, variants=('default',)) -> str:
    "Markdown: medians (min-max) per size and pipeline, the pairwise epoch-time ratio, and the profile of isic_siamese's step."
    from isic_siamese.experiment import markdown_table
    from profiling import profile_table
    lines = ['| size | pipeline | runs | encoder passes | epoch (s) | data path (img/s) | model (img/s) | data/model | peak RSS (MiB) | peak GPU (MiB) |',
             '|---|---|---|---|---|---|---|---|---|---|']
    timed = [r for r in results if not r.get('extra')]
    for size in sizes:
        paths = [('isic_siamese' if v == 'default' else f'isic_siamese {v}') for v in variants]
        for path in (paths if skip_baseline else ['seed-style', *paths]):
            rs = [r for r in timed if r['size'] == size and r['path'] == path]
            gpu = [r['peak_gpu_mib'] for r in rs if r['peak_gpu_mib'] is not None]
            lines.append(f"| {size} | {path} | {len(rs)} | {rs[0]['encoder_passes']} | {_mmm([r['epoch_s'] for r in rs])} | "
                         f"{_mmm([r['data_images_per_s'] for r in rs], '.0f')} | {_mmm([r['model_images_per_s'] for r in rs], '.0f')} | "
                         f"{_mmm([r['data_images_per_s']/r['model_images_per_s'] for r in rs], '.1f', 'x')} | "
                         f"{max(r['peak_rss_mib'] for r in rs)} | {max(gpu) if gpu else '-'} |")
    out = ['\n'.join(lines), '']
    for size in sizes:
        for path in paths:
            o = [r for r in timed if r['size'] == size and r['path'] == path]
            if not skip_baseline:
                b = [r for r in timed if r['size'] == size and r['path'] == 'seed-style']
                ratios = [x['epoch_s']/y['epoch_s'] for x, y in zip(sorted(b, key=lambda r: r['repeat']), sorted(o, key=lambda r: r['repeat']))]
                out.append(f"{size} px: epoch time seed-style / {path} = {_mmm(ratios, '.2f', 'x')}, median (min-max) of {len(ratios)} "
                           f"pairs: {', '.join(f'{x:.2f}x' for x in ratios)}")
        o = [r for r in timed if r['size'] == size and r['path'] == paths[0]]
        out.append(f"{size} px: cache build {_mmm([r['cache_build_s'] for r in o], '.1f', ' s')} once ({o[0]['cache_mib']} MiB); "
                   f"precision {o[0]['precision'] or 'fp32'}, channels_last {o[0]['channels_last']}, {o[0]['num_workers']} workers")
        for v, path in zip(variants, paths):
            if VARIANTS[v].get('compile') and (w := [r['warm_up_s'] for r in timed if r['size'] == size and r['path'] == path]):
                out.append(f"{size} px: {path}: torch.compile's warm-up (one untimed forward and backward) {_mmm(w, '.1f', ' s')}, "
                           "excluded from its epoch time")
    profs = {f"{size} px{'' if path == 'isic_siamese' else path.removeprefix('isic_siamese')}": _median_profile(ps) for size in sizes for path in paths
             if (ps := [r['profile'] for r in results if r['size'] == size and r['path'] == path and r.get('profile')])}
    if profs:
        out += ['', "isic_siamese's training step by phase (mean per batch, median over runs; device synchronised at each boundary):", '',
                markdown_table(profile_table(profs))]
    return '\n'.join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', default=str(HERE.parent.parent/'shared'/'data'/'ham224'), help="data folder, or 'demo'")
    p.add_argument('--n', type=int, default=512, help='images per epoch')
    p.add_argument('--sizes', type=int, nargs='+', default=[128, 224])
    p.add_argument('--bs', type=int, default=64, help='batch size: pairs for seed-style, images for isic_siamese')
    p.add_argument('--skip-baseline', action='store_true', help='measure only isic_siamese (e.g. a 33,126-image epoch)')
    p.add_argument('--repeats', type=int, default=3, help='runs of each measurement, in fresh processes, interleaved')
    p.add_argument('--threads', type=int, default=None, help="torch CPU threads in every run (torch's default when omitted)")
    p.add_argument('--no-profile', action='store_true', help="skip the per-phase profile of isic_siamese's step")
    p.add_argument('--variants', nargs='+', default=['default'], choices=list(VARIANTS),
                   help="isic_siamese runs: the library's defaults for this device, or with one setting changed (all interleaved)")
    p.add_argument('--json', default=None, help='also write the results here')
    a = p.parse_args()
    import torch
    set_threads(a.threads)
    cuda, ctx, results = torch.cuda.is_available(), mp.get_context('spawn'), []
    def run(fn, size, repeat, profile, extra=False, variant='default'):
        kw = dict(data=a.data, n=a.n, size=size, bs=a.bs, threads=a.threads) | (dict(profile=profile, variant=variant) if fn == 'ours' else {})
        with ctx.Pool(1) as pool: r = pool.map(_run, [(fn, kw)])[0]  # fresh process: its own peak memory
        results.append(r | dict(repeat=repeat, extra=extra))
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in r.items() if k != 'profile'} | dict(repeat=repeat)), flush=True)
    for repeat in range(a.repeats):
        for size in a.sizes:
            order = [('ours', v) for v in a.variants] if a.skip_baseline else [('baseline', None), *[('ours', v) for v in a.variants]]
            for fn, v in order[::1 if repeat % 2 == 0 else -1]:
                run(fn, size, repeat, profile=fn == 'ours' and not cuda and not a.no_profile, variant=v or 'default')
    if cuda and not a.no_profile:
        for size in a.sizes:
            for v in a.variants: run('ours', size, None, profile=True, extra=True, variant=v)  # on CUDA the profiler's synchronisation would slow the timed runs
    print(f"\nmachine: {machine()}\ndata: {a.data}, {a.n} images, batch size {a.bs}, {a.repeats} runs each\n")
    print(summary(results, a.sizes, a.skip_baseline, a.variants))
    if a.json: Path(a.json).write_text(json.dumps(dict(machine=machine(), args=vars(a), results=results), indent=2))


if __name__ == '__main__': main()
