"""`cnnlab serve RUN [RUN...]`: the lab page and a JSON API over trained runs (FastAPI + uvicorn).

GET  /                  the lab (static/: plain JS modules, no CDN: it works offline)
POST /predict           top-k classes: an image upload (multipart, field "file") or JSON {"pixels": 28x28 ints}
POST /activations       every stage of the model for the same input, quantised (explain/stages.py)
POST /explain           one convolution output as the multiply-add that makes it
A digit run (MNIST-style, 1x28x28) takes all three, and the page offers a canvas. Any other run (CIFAR, your own
images) takes uploads to /predict only, fitted as its training images were, and the page offers an upload box;
the rest answer 422. Digit runs and image runs are not served together: the page has one input for all runs.
GET  /runs, /runs/{i}/metrics, /runs/{i}/confusion   the runs, their curves (polled) and confusion matrix
GET  /shape             `cnnlab shape` for the stride/padding explorer
GET  /health, /model;  /docs: Swagger UI, served from the swagger-ui-bundle package

Limits (a server must not be driven out of memory or held open by a client):
- a body over MAX_BODY bytes is refused with 413, by Content-Length or as it streams in, and a body not
  complete within BODY_SECONDS gets 408 (a client that sends less than its Content-Length is not waited for);
- request headers must be complete within HEADER_SECONDS of connecting or of the previous response
  (uvicorn's keep-alive timeout covers only idle connections), and within MAX_HEADER_BYTES;
- images are refused past SERVED_PIXELS decoded pixels; JPEGs are decoded at a reduced scale;
- at most WORKERS decodes and forward passes run at once, QUEUE more wait, the rest get 503 + Retry-After;
- uvicorn answers 503 itself past CONNECTIONS open connections; a new connection that reaches the cap first
  closes the oldest one with no request in progress, so half-open connections cannot lock the lab out.
The lab serves one person's browser on their own machine: the connection cap is not per client (the browser
and any local program are both 127.0.0.1), and a program keeping CONNECTIONS requests in progress can still get
503s for everyone (docs/lab.md, measured with benchmarks/half_open.py).

Other web pages (security.py): every answer carries a content-security policy (no inline script or style);
a Host other than this machine's names (DNS rebinding) gets 400; a POST that is neither JSON nor carries
X-Requested-With (what a cross-site form can send) gets 403; non-finite numbers are answered as null.

The package follows FastAPI's "bigger applications" layout:
  app.py           create_app: the middleware and the routers, a table of contents
  routers/         one APIRouter per area: predict, stages (and the inspector), runs, explorer, pages (and docs)
  dependencies.py  the lookups routes share: the lab, the run at an index, a digit run
  lab.py           the served runs (LabRun) and the lab they make (Lab)
  bodies.py        the JSON bodies a client sends
  limits.py        BodyGuard (body size and time) and Admission (CPU work)
  errors.py        how errors answer; encoding.py: JSON with no NaN or infinity
  security.py      the content-security policy, the Host names answered, no cross-site form posts
  connections.py   the header deadline and room for new connections: what ASGI cannot see
  running.py       uvicorn's settings, serve, serving_in_thread
"""

from cnnlab.inference.serve.app import create_app
from cnnlab.inference.serve.lab import SERVED_PIXELS
from cnnlab.inference.serve.limits import MAX_BODY
from cnnlab.inference.serve.running import AlongsideLab, LabServer, serve, server_config, serving_in_thread

__all__ = [
    "MAX_BODY",
    "SERVED_PIXELS",
    "AlongsideLab",
    "LabServer",
    "create_app",
    "serve",
    "server_config",
    "serving_in_thread",
]
