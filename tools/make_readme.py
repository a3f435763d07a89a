"""Regenerate what is derived from the project's settings, from the project root: `python tools/make_readme.py`.

1. Links: every URL of this project's repository, documentation site or Colab notebooks written in the
   notebooks (and so in the README) is rewritten from `[project.urls]` in pyproject.toml, the one place the
   repository is named (Colab links also take the branch, `[tool.nbdev] branch`). An "Open in Colab" badge is
   `colab_badge(notebook)`; its link keeps the notebook it names, which must exist in nbs/.
2. README.md: the markdown cells of nbs/index.ipynb, joined. (nbdev's own `nbdev-readme` needs Quarto, which
   the development and CI machines do not have; the README is the index notebook's prose.)

nbs/index.ipynb tests that both are up to date.
"""
import json, re, tomllib
from pathlib import Path

HEADER = '<!-- generated from nbs/index.ipynb: edit the notebook, not this file -->\n\n'

def project(root='.') -> dict:
    "Repository URL, owner, name, branch and documentation URL from pyproject.toml."
    cfg = tomllib.loads((Path(root)/'pyproject.toml').read_text())
    proj = cfg['project']
    git_url = proj['urls']['Repository'].rstrip('/')
    user, repo = git_url.split('/')[-2:]
    return dict(name=proj['name'], git_url=git_url, user=user, repo=repo, branch=cfg['tool']['nbdev'].get('branch', 'main'),
                doc_url=proj['urls']['Documentation'].rstrip('/'))

COLAB = 'https://colab.research.google.com/github/'

def colab_url(nb:str, p:dict) -> str:
    "The Colab address of notebook `nb` (a file name in nbs/) on the configured repository and branch."
    return f"{COLAB}{p['user']}/{p['repo']}/blob/{p['branch']}/nbs/{nb}"

def colab_badge(nb:str, p:dict) -> str:
    "Markdown of an 'Open in Colab' badge for notebook `nb`."
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(nb, p)})"

def colab_targets(text:str) -> list:
    "The repository paths that the Colab links in `text` open (such as nbs/tutorial_colab.ipynb)."
    return re.findall(re.escape(COLAB) + r'[\w.-]+/[\w.-]+/blob/[\w.-]+/([\w./-]+\.ipynb)', text)

def link_patterns(p:dict) -> list:
    "(regex, replacement) pairs that point every link of the project at the configured repository."
    return [(re.escape(COLAB) + r'[\w.-]+/[\w.-]+/blob/[\w.-]+/', f"{COLAB}{p['user']}/{p['repo']}/blob/{p['branch']}/"),
            (r'https://github\.com/[\w.<>-]+/' + re.escape(p['repo']) + r'\b', p['git_url']),
            (r'https://[\w<>-]+\.github\.io/' + re.escape(p['repo']) + r'\b', p['doc_url'])]

def relink(text:str, p:dict) -> str:
    for pat, rep in link_patterns(p): text = re.sub(pat, rep, text)
    return text

def readme_text(root='.') -> str:
    cells = json.loads((Path(root)/'nbs'/'index.ipynb').read_text())['cells']
    return HEADER + '\n\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown') + '\n'

def relink_notebooks(root='.') -> list:
    "Rewrite the project's links in every notebook's sources; return the notebooks changed."
    p, changed = project(root), []
    for nb in sorted((Path(root)/'nbs').glob('*.ipynb')):
        d = json.loads(nb.read_text())
        new = [relink(''.join(c['source']), p) for c in d['cells']]
        if new != [''.join(c['source']) for c in d['cells']]:
            for c, src in zip(d['cells'], new): c['source'] = src.splitlines(keepends=True)
            nb.write_text(json.dumps(d, indent=1, ensure_ascii=False) + '\n'); changed.append(nb.name)
    return changed

if __name__ == '__main__':
    changed = relink_notebooks()
    if changed: print('links updated in', ', '.join(changed))
    Path('README.md').write_text(readme_text())
