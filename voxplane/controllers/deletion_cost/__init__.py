"""Idle workers go first: keeps each agent pod's `controller.kubernetes.io/pod-deletion-cost` equal
to its worker's active jobs, so a shrinking pool's ReplicaSet removes idle workers before busy ones.

The ReplicaSet controller (kube-controller-manager v1.34, pkg/controller/controller_utils.go,
ActivePodsWithRanks) picks the pods to delete by rank: unscheduled first, then pending, not ready,
then the lowest deletion cost, then other tie-breakers, within one ReplicaSet. KEDA and the HPA
only set a replica count; without a cost the ReplicaSet may pick a worker carrying eight calls
while an idle one stays (kedacore/keda#3680, livekit/agents#3020).

Where the active jobs come from: the Prometheus the autoscaler already queries
(`lk_agents_active_job_count` per pod, the labels prometheus-operator's PodMonitor relabelling
adds). The controller needs no route to tenant pods and no tenant port open to it; the price is
staleness: a value is up to one scrape interval old when read, plus the controller's own interval.

`config.Config` is its whole configuration (the ConfigMap the region's render writes; no secret);
`decide` holds the decisions (what to write, in what order, within what budget); `controller`
the loop; `python -m voxplane.controllers.deletion_cost run --config FILE` runs it.
"""
