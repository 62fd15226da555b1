"""Load: the manifests (regions/, agents/, Pulumi.<stack>.yaml) in, the typed model out, or every
problem, each at its file, line and field. Nothing later reads a file; it reads the model.

- `sourcemap`: YAML with the line and column of every key and value; `indentation`: where the
  parser gave up, which line is out of place;
- `schema`: the JSON Schemas (schemas/*.json) as validators and defaults; `secret_fields`: the
  fields that hold a secret (never echoed); `placeholders`: values left to fill in;
- `model`: the typed model (frozen dataclasses); `quantity`: Kubernetes quantities as numbers;
- `crosscheck`: rules between files and inside a region; `changes`: the files the working tree
  changes (a conflict is told at the file being edited); `stackfile`: the stack files;
- `providers`: the external inference providers an agent can name; `servers`: the model-server
  releases the render was checked against;
- `problems`: one `Problem` per mistake; `loader`: all of it in order (`load`, `load_region`,
  `find_region`).
"""
