"""Images of the repository built outside Pulumi: exactly the builds a region's stack declares.

- `stack`: what the stack builds, read from the program itself (run under the mock engine with
  image building on): each image's context, Dockerfile, build arguments and the tag the render
  computes, in an order where an image comes after the one it is built FROM;
- `docker`: the Docker CLI that builds, pushes and asks a registry what it holds;
- `publish`: build what the registry lacks, push it, and say what each image is (pushed now or
  already there, with its digest);
- `record`: the pushed digests, where the stack reads them (`.voxplane/images/<region>.json`), so a
  stack that does not build (`voxplane:buildImages false`) deploys digests, not tags.

The command line, `voxplane images build|push REGION`, is voxplane/cli/images.py.
"""
