"""A real Kubernetes control plane on this machine, for end-to-end tests and the playground.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler (built from
Debian's `kubernetes` source package by `scripts/build-k8s.sh`) run on free
loopback ports in a temporary folder. There are no kubelets: nodes are Node
objects whose status the harness writes, and pods are bound but never run.
"""
