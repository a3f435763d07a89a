"""The screening study behind issue 15's recipes: diagnosis-aware training, temperature and scoring variants.

Runs `compare_models` on one data folder (ham224) with derm7pt as the external set, at a screening budget
(48 px, 6 epochs by default: pass --size/--epochs to change it). Finished runs in OUT are reused, so a stopped
study resumes, and scoring-only variants re-score a finished model. Every option of `isic-siamese-compare` works.

    python bench/similarity_study.py ../shared/data/ham224 --external ../shared/data/derm7pt --out runs/screen
"""
from pathlib import Path
import pandas as pd
from isic_siamese.experiment import BENCHMARK, Recipe, compare_models, compare_parser, cli_errors, markdown_table, read_split, recipe_learner, fit_and_evaluate
from isic_siamese.eval import plot_neighbours

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

def neighbours_figure(data, run, recipe:Recipe, fname, n:int=4, seed:int=0):
    "The finished model in `run` (re-scored, not retrained): `n` test lesions (half melanomas) beside their 5 nearest training lesions."
    df = read_split(data, recipe)
    learn = recipe_learner(df, recipe, run, verbose=False)
    learn.evaluation, _ = fit_and_evaluate(learn, df, verbose=False)
    te = df[df.split.eq('test')]
    some = pd.concat([te[te.label.eq(1)].sample(n//2, random_state=seed), te[te.label.eq(0)].sample(n - n//2, random_state=seed)])
    return plot_neighbours(learn.predict_lesions(some.path.tolist(), k=5), truth=some.diagnosis.tolist(), fname=fname,
                           title=f'{Path(run).name}: ham224 test lesions and their 5 nearest training lesions')

if __name__ == '__main__':
    p = compare_parser()
    p.prog, p.description = 'similarity_study.py', __doc__.split('\n')[0]
    p.set_defaults(out='runs/screen', size=48, epochs=6)
    p.add_argument('--models', nargs='+', default=list(STUDY), choices=list(STUDY), help='a subset of the study')
    p.add_argument('--neighbours', nargs='*', default=[], choices=list(STUDY), help='also draw OUT/neighbours_MODEL.png for these models')
    a = p.parse_args()
    with cli_errors(p.prog, a.debug):  # a missing folder or a bad setting: one line, as in the console scripts
        table = compare_models(a.data, a.out, a.external, base=Recipe.from_args(a), models={m: STUDY[m] for m in a.models}, seeds=a.seeds)
        print(markdown_table(table.reset_index(level='seed')))
        base, seed = Recipe.from_args(a), (a.seeds or [None])[0]  # the model of the first seed, in the folder compare_models gave it
        for m in a.neighbours:
            r = base.replace(**STUDY[m], **({} if seed is None else dict(seed=seed)))
            run = Path(a.out)/(m if r.seed == base.seed else f'{m}_seed{r.seed}')
            neighbours_figure(a.data, run, r, Path(a.out)/f'neighbours_{m}.png')
