"""The GPU preflight: the first thing each model pod runs, an init container holding the same GPUs
the model server will (issue #22 item 6).

It reads what NVML sees there (`nvidia-ml-py`, the bindings NVIDIA publishes: GPU count, product
name, memory, MIG mode, driver version and the CUDA version the driver supports) and compares it
with what the render expects: the node group's declared product and memory per GPU, and the
model's GPUs per replica. A mismatch fails the pod before a model server starts loading weights
onto the wrong hardware, with one line saying what differs; either way the verdict is the init
container's termination message (JSON), which `voxplane status` reads.

`nvml` reads, `check` compares (pure), `__main__` is the container's command:
`python -m voxplane.gpu_preflight --gpus N --product NAME --memory-gib G`. Like the gateway, the
package imports nothing else of voxplane: its image holds only it and its locked requirements.
"""
