"""The recipe study behind the README's quality table and the prose of 03_train/04_eval.

Runs `compare_models` on one data folder with the three benchmark models, pure supervised contrastive, and
variants: scoring method and test-time augmentation (re-scoring finished models), colour constancy and the
`strong` augmentation preset (new trainings). Finished runs in OUT are reused, so a stopped study resumes.

    python bench/quality_study.py ../shared/data/ham224 --out runs/study
"""
import argparse
from isic_siamese.eval import COMPARE_MODELS, compare_models, markdown_table

supcon, ce = dict(loss='supcon', method='prototype'), COMPARE_MODELS['cross_entropy']
STUDY = dict(
    **COMPARE_MODELS,  # siamese = supcon+ce, the study's winner
    siamese_head=dict(COMPARE_MODELS['siamese'], method='head', run='siamese'),
    cross_entropy_tta=dict(ce, tta=True, run='cross_entropy'),
    supcon=supcon,
    supcon_tta=dict(supcon, tta=True, run='supcon'),
    supcon_knn=dict(supcon, method='knn', run='supcon'),
    supcon_logistic=dict(supcon, method='classifier', run='supcon'),
    supcon_sog6=dict(supcon, colour_constancy=6),
    supcon_strong=dict(supcon, aug='strong'),
)

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('data'); p.add_argument('--out', default='runs/study')
    p.add_argument('--models', nargs='+', default=list(STUDY), help=f'a subset of {list(STUDY)}')
    p.add_argument('--external', action='append', default=[])
    p.add_argument('--arch', default='resnet18'); p.add_argument('--epochs', type=int, default=12)
    p.add_argument('--size', type=int, default=64); p.add_argument('--bs', type=int, default=64)
    a = p.parse_args()
    table = compare_models(a.data, a.out, a.external, models={m: STUDY[m] for m in a.models}, arch=a.arch,
                           epochs=a.epochs, size=a.size, bs=a.bs)
    print(markdown_table(table))
