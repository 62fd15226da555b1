// npeval answers "is this traffic allowed?" for Kubernetes NetworkPolicies, with the policy
// engine of cyclonus (github.com/mattfenwick/cyclonus/pkg/matcher, the evaluator its offline
// `analyze --mode query-traffic` uses; kubernetes-sigs/network-policy-api's policy-assistant grew
// out of it). No cluster and no CNI: the semantics are the NetworkPolicy API's, as cyclonus
// implements them (default deny once a policy selects a pod per direction, rules OR-ed, ipBlock
// with except, named ports, endPort ranges).
//
// stdin:  {"policies": [NetworkPolicy...], "traffic": [cyclonus Traffic...]}
// stdout: one {"allowed", "ingress", "egress"} object per traffic entry, in order.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	networkingv1 "k8s.io/api/networking/v1"
)

type request struct {
	Policies []*networkingv1.NetworkPolicy `json:"policies"`
	Traffic  []*matcher.Traffic           `json:"traffic"`
}

type answer struct {
	Allowed bool `json:"allowed"`
	Ingress bool `json:"ingress"`
	Egress  bool `json:"egress"`
}

func main() {
	var req request
	dec := json.NewDecoder(os.Stdin)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fmt.Fprintf(os.Stderr, "npeval: reading the request: %v\n", err)
		os.Exit(2)
	}
	// simplify=false: evaluate the policies as written, not a reduced equivalent.
	policy := matcher.BuildNetworkPolicies(false, req.Policies)
	out := make([]answer, 0, len(req.Traffic))
	for _, t := range req.Traffic {
		result := policy.IsTrafficAllowed(t)
		out = append(out, answer{Allowed: result.IsAllowed(), Ingress: result.Ingress.IsAllowed(), Egress: result.Egress.IsAllowed()})
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintf(os.Stderr, "npeval: %v\n", err)
		os.Exit(1)
	}
}
