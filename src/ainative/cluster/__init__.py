"""Where Ray runs: an embedded local Ray, an existing cluster, or one provisioned through KubeRay."""
