"""Write README.md from the markdown cells of nbs/index.ipynb (run from the project root): `python tools/make_readme.py`.

nbdev's own `nbdev-readme` needs Quarto, which the development and CI machines do not have; the README is the
index notebook's prose, so joining its markdown cells gives the same text. index.ipynb tests that the two agree.
"""
import json
from pathlib import Path

HEADER = '<!-- generated from nbs/index.ipynb: edit the notebook, not this file -->\n\n'

def readme_text(root='.') -> str:
    cells = json.loads((Path(root)/'nbs'/'index.ipynb').read_text())['cells']
    return HEADER + '\n\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown') + '\n'

if __name__ == '__main__': Path('README.md').write_text(readme_text())
