"""``mbgf demo``: a local web page to try a model on a video (``mbgf_cli.demo.server``; the page's
files in ``static/``, shipped with the package, so the page fetches nothing from elsewhere).

Needs the ``demo`` extra (Starlette, uvicorn): ``pip install 'mbgf[demo]'``.
"""
