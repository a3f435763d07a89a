"""The recipe study behind the README's quality table and the prose of 03_train/04_eval/06_experiment.

Runs `compare_models` on one data folder with the three benchmark recipes, pure supervised contrastive, and
variants: scoring method and test-time augmentation (which re-score finished models, since their training
settings are the same), colour constancy and the `strong` augmentation preset (new trainings). Finished runs in
OUT are reused, so a stopped study resumes. Every recipe option of `isic-siamese-compare` works here too.

    python bench/quality_study.py ../shared/data/ham224 --out runs/study
"""
from isic_siamese.experiment import COMPARE_MODELS, Recipe, compare_models, compare_parser, markdown_table

supcon, ce = dict(loss='supcon', method='prototype'), COMPARE_MODELS['cross_entropy']
STUDY = dict(
    **COMPARE_MODELS,  # siamese = supcon+ce, the study's winner
    siamese_head=dict(COMPARE_MODELS['siamese'], method='head'),
    cross_entropy_tta=dict(ce, tta=True),
    supcon=supcon,
    supcon_tta=dict(supcon, tta=True),
    supcon_knn=dict(supcon, method='knn'),
    supcon_logistic=dict(supcon, method='classifier'),
    supcon_sog6=dict(supcon, colour_constancy=6),
    supcon_strong=dict(supcon, aug='strong'),
)

if __name__ == '__main__':
    p = compare_parser()
    p.prog, p.description = 'quality_study.py', __doc__.split('\n')[0]
    p.set_defaults(out='runs/study')
    p.add_argument('--models', nargs='+', default=list(STUDY), choices=list(STUDY), help='a subset of the study')
    a = p.parse_args()
    table = compare_models(a.data, a.out, a.external, base=Recipe.from_args(a), models={m: STUDY[m] for m in a.models}, seeds=a.seeds)
    print(markdown_table(table.reset_index(level='seed')))
