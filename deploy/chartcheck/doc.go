// Package chartcheck is the CI check of Kurier's Helm chart
// (deploy/helm/kurier). Its tests render the chart with its default values
// and with every ci/*-values.yaml, as helm lint and helm template would, and
// check what comes out against Kurier itself rather than against a
// description of it: every object decodes strictly into its Kubernetes API
// type; every environment variable is one that the container's role reads,
// as `kurier <role> -h` lists them; secrets come from Secrets and files from
// mounted volumes; pods are locked down; probes and ports meet the listeners,
// and each role started with a Deployment's environment answers its probes;
// Services, PDBs, NetworkPolicies, HPAs, Ingresses and the console's admin
// address point at what the chart renders.
//
// It is a module of its own, outside go.work, because Helm and the
// Kubernetes API types bring a large tree of dependencies whose versions
// must not move those the services are built with. It builds the kurier
// binary from the repository as a subprocess instead of importing it.
//
// KURIER_CHART names another chart folder to check (default ../helm/kurier).
package chartcheck
