"""The optional validating admission webhook for PeeringConnectivity (README, "Admission")."""
