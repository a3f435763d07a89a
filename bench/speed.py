"""Training speed: a seed-style Siamese pipeline against isic_siamese's, on the same images, encoder and batch size.

(a) seed style, written here in plain PyTorch as the public ISIC Siamese notebooks do it: a Dataset that opens
    each JPEG with PIL and runs torchvision transforms per item, one random pair per image, both images of each
    pair through the encoder, contrastive loss, fp32.
(b) isic_siamese: images decoded once into the memory-mapped cache, augmentation on the batch on the training
    device, balanced batches, every image encoded once and all pairs of the batch used (supervised contrastive),
    with the library's per-device defaults (workers, pinned memory, AMP and channels_last on CUDA).

Each measurement runs in a fresh process so peak memory is its own. Usage:

    python bench/speed.py                        # ../shared/data/ham224 (demo data when absent), 512 images, 128 and 224 px
    python bench/speed.py --n 33126 --sizes 256 --data demo   # GPU: a full ISIC 2020-sized epoch on synthetic images
"""
import argparse, json, multiprocessing as mp, os, platform, random, resource, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _images(data, n, seed=0):
    "Paths and labels of `n` images of `data` (a folder in any supported layout, or 'demo'), both classes kept."
    from isic_siamese.data import read_isic, make_demo_data
    if data == 'demo' or not Path(data).exists():
        data = make_demo_data(Path(tempfile.gettempdir())/f'isic_speed_demo_{n}', n_patients=(n + 9)//10, images_per_patient=10, size=256)
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


def baseline(data, n, size, bs, seed=0):
    "Seed-style PIL/torchvision pair pipeline: one epoch of N pairs (2N encoder passes)."
    import torch, torch.nn.functional as F, torchvision, torchvision.transforms as T
    from PIL import Image
    from isic_siamese.data import hardware
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


def ours(data, n, size, bs, seed=0):
    "isic_siamese: decoded cache, batch augmentation on the device, in-batch pairs (N encoder passes)."
    import torch, pandas as pd
    from fastai.vision.all import Callback
    from isic_siamese.data import hardware, lesion_dls, ImageCache
    from isic_siamese.pairs import BalancedDL
    from isic_siamese.train import siamese_learner
    hw = hardware()
    df = _images(data, n, seed)
    valid = df.groupby('label').head(bs//2).assign(split='valid')  # a token validation part, not timed
    df = pd.concat([df.assign(split='train'), valid], ignore_index=True)  # all N images train
    cache_dir = tempfile.mkdtemp(prefix='isic_speed_cache_')
    t = time.time(); cache = ImageCache.build(df.path.unique(), size, cache_dir, progress=False); cache_s = time.time() - t
    dls = lesion_dls(df, size=size, bs=bs, aug='light', cache=cache, dl_type=BalancedDL, dl_kwargs=[dict(pos_frac=0.25), {}])

    _sync(hw.device); t = time.time(); n_img = 0
    for xb, yb in dls.train: n_img += len(xb)
    _sync(hw.device); data_ips = n_img/(time.time() - t)

    class TrainTimer(Callback):
        def before_train(self): _sync(hw.device); self.t = time.time()
        def after_train(self): _sync(hw.device); self.learn.train_s = time.time() - self.t
    learn = siamese_learner(dls, arch='resnet18', loss='supcon', cbs=TrainTimer())
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    return dict(path='isic_siamese', size=size, n_images=n_img, encoder_passes=n_img, epoch_s=learn.train_s,
                data_images_per_s=data_ips, model_images_per_s=n_img/learn.train_s, cache_build_s=cache_s,
                cache_mib=round(os.path.getsize(cache.fname)/2**20), precision=hw.precision, channels_last=hw.channels_last,
                num_workers=hw.num_workers, **_peak(hw.device))


def _run(args):
    fn, kw = args
    return globals()[fn](**kw)


def machine():
    import torch
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f'CPU only ({os.cpu_count()} cores)'
    return f'{dev}; {platform.processor() or platform.machine()}; torch {torch.__version__}'


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', default=str(HERE.parent.parent/'shared'/'data'/'ham224'), help="data folder, or 'demo'")
    p.add_argument('--n', type=int, default=512, help='images per epoch')
    p.add_argument('--sizes', type=int, nargs='+', default=[128, 224])
    p.add_argument('--bs', type=int, default=64, help='batch size: pairs for seed-style, images for isic_siamese')
    p.add_argument('--skip-baseline', action='store_true', help='measure only isic_siamese (e.g. a 33,126-image epoch)')
    p.add_argument('--json', default=None, help='also write the results here')
    a = p.parse_args()
    ctx = mp.get_context('spawn')
    results = []
    for size in a.sizes:
        kw = dict(data=a.data, n=a.n, size=size, bs=a.bs)
        for fn in (['ours'] if a.skip_baseline else ['baseline', 'ours']):
            with ctx.Pool(1) as pool: r = pool.map(_run, [(fn, kw)])[0]  # fresh process: its own peak memory
            results.append(r)
            print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
    print(f"\nmachine: {machine()}\ndata: {a.data}, {a.n} images, batch size {a.bs}\n")
    print('| size | pipeline | encoder passes | epoch (s) | data path (img/s) | model (img/s) | data/model | peak RSS (MiB) | peak GPU (MiB) |')
    print('|---|---|---|---|---|---|---|---|---|')
    for r in results:
        print(f"| {r['size']} | {r['path']} | {r['encoder_passes']} | {r['epoch_s']:.1f} | {r['data_images_per_s']:.0f} | "
              f"{r['model_images_per_s']:.0f} | {r['data_images_per_s']/r['model_images_per_s']:.1f}x | {r['peak_rss_mib']} | {r['peak_gpu_mib'] or '-'} |")
    if not a.skip_baseline:
        for size in a.sizes:
            b, o = [r for r in results if r['size'] == size]
            print(f"{size}px: epoch time ratio seed-style/isic_siamese = {b['epoch_s']/o['epoch_s']:.2f}x; "
                  f"cache build {o['cache_build_s']:.1f} s once ({o['cache_mib']} MiB)")
    if a.json: Path(a.json).write_text(json.dumps(dict(machine=machine(), args=vars(a), results=results), indent=2))


if __name__ == '__main__': main()
