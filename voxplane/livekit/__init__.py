"""LiveKit control plane: desired SIP objects, reconcile, drift."""
