"""Lost agents are dispatched again: when the agent of a live call disappears without the call
ending (its worker killed, its pod or node gone) while the caller is still in the room, the
platform dispatches the agent again, once per loss (issue #19).

livekit-server does not do it itself (the open-source server never dispatches a job again when its
worker dies; livekit/agents#1472). It does report every participant that leaves a room in a
webhook (`participant_left`, config `webhook`), signed with an API key it knows. This controller
is that webhook's receiver: it verifies each event, decides from the event and what the server
lists of the room whether an agent was lost (`decide`: not an agent that ended its call, a room
that still has its caller, a job not recovered yet, an agent of the room's own tenant), and
dispatches the same agent again with `voxplane.recovery` in the dispatch's attributes, so the new
agent knows the call is under way (the platform glue's `recovery()`).

`config.Config` is its whole configuration (the ConfigMap the region renders; the key's secret is a
mounted file), `decide` the decisions, `controller` the process, `metrics` its Prometheus metrics;
`python -m voxplane.controllers.recovery serve --config FILE` runs it. It imports nothing else of
voxplane: this folder is its image's build context.
"""
