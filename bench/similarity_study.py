"""The screening study behind issue 15's recipes: diagnosis-aware training, temperature and scoring variants.

Runs `compare_models` on one data folder (ham224) with derm7pt as the external set, at a screening budget
(48 px, 6 epochs by default: pass --size/--epochs to change it). Finished runs in OUT are reused, so a stopped
study resumes, and scoring-only variants re-score a finished model. Every option of `isic-siamese-compare` works.

    python bench/similarity_study.py ../shared/data/ham224 --external ../shared/data/derm7pt --out runs/screen
"""
from isic_siamese.experiment import BENCHMARK, Recipe, compare_models, compare_parser, markdown_table

supcon_ce = dict(loss='supcon+ce', method='prototype')
ce, dx, dx3 = dict(loss='ce', method='head'), dict(supcon_ce, labels='diagnosis'), dict(supcon_ce, labels='diagnosis', temperature=0.3)
STUDY = dict(
    # trained: binary against diagnosis-aware targets, two temperatures
    cross_entropy=ce,
    siamese=supcon_ce,
    siamese_dx=dx,
    siamese_dx_t03=dx3,
    cross_entropy_dx=dict(ce, labels='diagnosis'),
    # re-scored: the classifier head instead of prototypes, the second stage (metadata, neighbours)
    siamese_head=dict(supcon_ce, method='head'),
    siamese_dx_head=dict(dx, method='head'),
    siamese_dx_t03_head=dict(dx3, method='head'),
    cross_entropy_stack=dict(ce, stack='logistic'),
    siamese_dx_stack=dict(dx, method='head', stack='logistic'),
    siamese_dx_hgb=dict(dx, method='head', stack='hgb'),
)

if __name__ == '__main__':
    p = compare_parser()
    p.prog, p.description = 'similarity_study.py', __doc__.split('\n')[0]
    p.set_defaults(out='runs/screen', size=48, epochs=6)
    p.add_argument('--models', nargs='+', default=list(STUDY), choices=list(STUDY), help='a subset of the study')
    a = p.parse_args()
    table = compare_models(a.data, a.out, a.external, base=Recipe.from_args(a), models={m: STUDY[m] for m in a.models}, seeds=a.seeds)
    print(markdown_table(table.reset_index(level='seed')))
