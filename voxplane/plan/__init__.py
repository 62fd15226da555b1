"""Offline answers about a change, before anything is deployed.

- `affected`: which region stacks a change touches (`voxplane affected`, the CI preview matrix);
- `plan`: what the change does, per manifest field, against a base revision (`voxplane plan`);
- `capacity`: how many calls a region's GPUs and agent pools carry (`voxplane capacity`).
"""
