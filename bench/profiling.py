"""Where a training step's time goes: a fastai callback that times each phase of every batch, synchronising the device at
each phase boundary, and its table."""
from __future__ import annotations
import time
import pandas as pd, torch
from fastai.vision.all import Callback, CancelFitException, find_bs

PHASES = dict(train=('data', 'forward', 'loss', 'backward', 'optimizer', 'ema', 'metric'), valid=('data', 'forward', 'loss', 'metric'))


class StepProfile(Callback):
    """Wall time of each phase of each batch, the boundaries being fastai's events: data (loader and batch transforms, up to
    `before_batch`), forward (to `after_pred`), loss (to `after_loss`), backward (to `after_backward`), optimizer (the step,
    and zero_grad after it), ema (the other `after_step` callbacks: EMA and the grad scaler's update) and metric (the
    `after_batch` callbacks: the Recorder's loss and metric accumulation). Validation batches have data, forward, loss
    and metric. With `fine=False` a batch has only data and step, with two synchronisations per batch.
    The first `skip` batches of each loop are warm-up; `stop_after` timed training batches end the fit.
    Add both callbacks of `.callbacks` (this one runs first at every event, `_PhaseEnd` last)."""
    order = -100
    def __init__(self, fine:bool=True, skip:int=1, stop_after:int|None=None):
        self.fine, self.skip, self.stop_after = fine, skip, stop_after
        self.times, self.callbacks = dict(train=[], valid=[]), [self, _PhaseEnd(self)]

    def _stamp(self, phase=None):
        if self.device.type == 'cuda': torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        if phase and self.batch is not None: self.batch[phase] = self.batch.get(phase, 0.) + now - self.t
        self.t = now

    def _start(self, mode):
        self.mode, self.i, self.batch = mode, 0, None
        self.device = next(self.learn.model.parameters()).device
        self._stamp()
    def before_train(self): self._start('train')
    def before_validate(self): self._start('valid')
    def before_batch(self):
        self.batch = dict(images=find_bs(self.learn.xb))
        self._stamp('data')
    def after_pred(self):
        if self.fine: self._stamp('forward')
    def after_loss(self):
        if self.fine: self._stamp('loss')
    def after_backward(self):
        if self.fine: self._stamp('backward')
    def after_step(self):
        if self.fine: self._stamp('optimizer')
    def after_batch(self):
        if self.fine and self.mode == 'train': self._stamp('optimizer')  # zero_grad

    def end_batch(self):
        "Close the batch (called by `_PhaseEnd` after every other `after_batch` callback)."
        self._stamp('metric' if self.fine else 'step')
        if self.i >= self.skip: self.times[self.mode].append(self.batch)
        self.i, self.batch = self.i + 1, None
        if self.mode == 'train' and self.stop_after and len(self.times['train']) >= self.stop_after: raise CancelFitException()

    def summary(self, mode:str='train') -> dict:
        "Mean milliseconds per batch of each phase, the timed batches, images per batch and images per second of the step (data excluded)."
        b = self.times[mode]
        if not b: return {}
        phases = PHASES[mode] if self.fine else ('data', 'step')
        ms = {p: 1e3*sum(x.get(p, 0.) for x in b)/len(b) for p in phases}
        images = sum(x['images'] for x in b)/len(b)
        step = sum(v for p, v in ms.items() if p != 'data')
        return dict(ms=ms, batches=len(b), images=images, step_ms=step, step_images_per_s=1e3*images/step if step else None,
                    images_per_s=1e3*images/(step + ms['data']))


class _PhaseEnd(Callback):
    "The last callback at `after_step` and `after_batch`: closes the phases the other callbacks run in."
    order = 100
    def __init__(self, prof): self.prof = prof
    def after_step(self):
        if self.prof.fine: self.prof._stamp('ema')
    def after_batch(self): self.prof.end_batch()


def profile_table(summaries:dict) -> pd.DataFrame:
    "Phases (rows) by run (columns, from `{name: StepProfile.summary()}`): ms per batch and share of the batch."
    cols = {}
    for name, s in summaries.items():
        total = sum(s['ms'].values())
        col = {p: f'{v:.1f} ms ({100*v/total:.0f}%)' for p, v in s['ms'].items()}
        col['batch (data included)'] = f"{total:.1f} ms, {s['images']:.0f} images"
        col['images/s without data'] = f"{s['step_images_per_s']:,.0f}"
        cols[name] = col
    return pd.DataFrame(cols).rename_axis('phase')
