package chartcheck

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// The release the chart is rendered as.
const releaseName, namespace = "kurier", "kurier"

// kubeVersion is the cluster the chart is rendered for: what the helm CLI
// built with this module's client-go (v0.37) assumes. Helm's library
// assumes v1.20 inside test binaries, which a chart's kubeVersion refuses.
var kubeVersion = func() *common.KubeVersion {
	v, err := common.ParseKubeVersion("v1.37.0")
	if err != nil {
		panic(err)
	}
	return v
}()

// kinds are the objects the chart may render, by "apiVersion kind", each
// with the Go type it must decode into. Anything else fails the check: a
// new kind is a decision to make here, not something to slip through.
var kinds = map[string]func() any{
	"apps/v1 Deployment":                     func() any { return new(appsv1.Deployment) },
	"v1 Service":                             func() any { return new(corev1.Service) },
	"v1 ServiceAccount":                      func() any { return new(corev1.ServiceAccount) },
	"v1 ConfigMap":                           func() any { return new(corev1.ConfigMap) },
	"v1 Secret":                              func() any { return new(corev1.Secret) }, // decoded so that TestSecrets can refuse it by name
	"v1 Pod":                                 func() any { return new(corev1.Pod) },    // helm test hooks
	"policy/v1 PodDisruptionBudget":          func() any { return new(policyv1.PodDisruptionBudget) },
	"autoscaling/v2 HorizontalPodAutoscaler": func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"networking.k8s.io/v1 NetworkPolicy":     func() any { return new(networkingv1.NetworkPolicy) },
	"networking.k8s.io/v1 Ingress":           func() any { return new(networkingv1.Ingress) },
}

// chartDir is the chart under test.
func chartDir() string {
	if d := os.Getenv("KURIER_CHART"); d != "" {
		return d
	}
	return filepath.Join("..", "helm", "kurier")
}

// object is one rendered Kubernetes object.
type object struct {
	source           string // the template it came from, as helm names it
	apiVersion, kind string
	name             string
	obj              any // a pointer to the k8s.io/api type of kinds
}

func (o object) String() string { return fmt.Sprintf("%s %s (%s)", o.kind, o.name, o.source) }

// rendering is the chart rendered with one value set.
type rendering struct {
	name     string         // "default", or the ci file's name less -values.yaml
	vals     map[string]any // the values given on top of the chart's
	err      error          // the chart did not render at all
	problems []error        // documents that did not decode
	objects  []object
}

// renderings renders the chart once per value set, for all the tests.
var renderings = sync.OnceValues(func() ([]*rendering, error) {
	dir := chartDir()
	if _, err := os.Stat(filepath.Join(dir, "Chart.yaml")); err != nil {
		return nil, fmt.Errorf("no chart at %s: %w", dir, err)
	}
	rs := []*rendering{{name: "default", vals: map[string]any{}}}
	files, err := filepath.Glob(filepath.Join(dir, "ci", "*-values.yaml"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		vals, err := common.ReadValuesFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		rs = append(rs, &rendering{name: strings.TrimSuffix(filepath.Base(f), "-values.yaml"), vals: vals})
	}
	for _, r := range rs {
		var docs []doc
		if docs, r.err = render(dir, r.vals); r.err == nil {
			r.objects, r.problems = decode(docs)
		}
	}
	return rs, nil
})

// eachValueSet runs check on the rendering of every value set, as a
// parallel subtest named after it, failing those that did not render.
func eachValueSet(t *testing.T, check func(t *testing.T, r *rendering)) {
	t.Helper()
	eachValueSetAsIs(t, func(t *testing.T, r *rendering) {
		if r.err != nil {
			t.Fatalf("value set %s: the chart does not render: %v", r.name, r.err)
		}
		check(t, r)
	})
}

// eachValueSetAsIs is eachValueSet for checks that need no rendering.
func eachValueSetAsIs(t *testing.T, check func(t *testing.T, r *rendering)) {
	t.Helper()
	rs, err := renderings()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			check(t, r)
		})
	}
}

// doc is one YAML document of the rendered manifest.
type doc struct {
	source string
	yaml   []byte
}

var (
	docSep     = regexp.MustCompile(`(?m)^---[ \t]*$`)
	sourceLine = regexp.MustCompile(`(?m)^# Source: (.*)$`)
)

// render is `helm template kurier <chart> -n kurier -f <values>`: an install
// that stays on the client, with the default capabilities of a cluster.
func render(dir string, vals map[string]any) ([]doc, error) {
	ch, err := loader.Load(dir) // anew each time: an install may change the chart it is given
	if err != nil {
		return nil, fmt.Errorf("load chart: %w", err)
	}
	install := action.NewInstall(action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler)))
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName, install.Namespace, install.KubeVersion = releaseName, namespace, kubeVersion
	// Already among the defaults; named so that a chart gating its HPA,
	// PDB or NetworkPolicy on .Capabilities.APIVersions.Has renders them
	// whatever Helm's defaults become.
	install.APIVersions = common.VersionSet{"autoscaling/v2", "policy/v1", "networking.k8s.io/v1"}
	rr, err := install.Run(ch, vals)
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	rel, ok := rr.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("render: a release of type %T", rr)
	}
	var docs []doc
	add := func(source, manifest string) {
		for _, d := range docSep.Split(manifest, -1) {
			if m := sourceLine.FindStringSubmatch(d); m != nil {
				source = m[1]
			}
			docs = append(docs, doc{source, []byte(d)})
		}
	}
	add("", rel.Manifest)
	for _, h := range rel.Hooks {
		add(h.Path, h.Manifest)
	}
	return docs, nil
}

// decode decodes every non-empty document strictly into the type kinds
// has for it: an unknown field, a duplicate key or an unknown kind is a
// problem.
func decode(docs []doc) (objs []object, problems []error) {
	for _, d := range docs {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(d.yaml, &head); err != nil {
			problems = append(problems, fmt.Errorf("%s: not YAML: %w", d.source, err))
			continue
		}
		if head.APIVersion == "" && head.Kind == "" && len(bytes.TrimSpace(stripComments(d.yaml))) == 0 {
			continue // an empty document, as conditional templates leave
		}
		o := object{source: d.source, apiVersion: head.APIVersion, kind: head.Kind, name: head.Metadata.Name}
		newObj, ok := kinds[o.apiVersion+" "+o.kind]
		if !ok {
			problems = append(problems, fmt.Errorf("%s: apiVersion %q kind %q is not among the kinds this check knows (chart_test.go, kinds)", o, o.apiVersion, o.kind))
			continue
		}
		o.obj = newObj()
		if err := yaml.UnmarshalStrict(d.yaml, o.obj); err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", o, err))
			continue
		}
		objs = append(objs, o)
	}
	return objs, problems
}

func stripComments(b []byte) []byte {
	var out []byte
	for line := range bytes.Lines(b) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

// all answers the rendered objects of type T, e.g. all[*appsv1.Deployment].
func all[T any](r *rendering) (objs []object, typed []T) {
	for _, o := range r.objects {
		if v, ok := o.obj.(T); ok {
			objs, typed = append(objs, o), append(typed, v)
		}
	}
	return objs, typed
}

// TestLint is `helm lint --strict` with each value set: no warning, no
// error. Its INFO messages (an icon is recommended, …) are logged.
func TestLint(t *testing.T) {
	eachValueSetAsIs(t, func(t *testing.T, r *rendering) {
		l := action.NewLint()
		l.Strict, l.Namespace, l.KubeVersion = true, namespace, kubeVersion
		res := l.Run([]string{chartDir()}, r.vals)
		for _, m := range res.Messages {
			if m.Severity < support.WarningSev {
				t.Logf("value set %s: lint: %v", r.name, m)
			}
		}
		for _, err := range res.Errors {
			t.Errorf("value set %s: lint: %v", r.name, err)
		}
	})
}

// TestTemplate renders each value set and decodes every object strictly
// into its Kubernetes type: a misspelt or misplaced field, which the API
// server would drop or refuse, fails here. Names are set and unique per kind.
func TestTemplate(t *testing.T) {
	eachValueSet(t, func(t *testing.T, r *rendering) {
		for _, err := range r.problems {
			t.Errorf("value set %s: %v", r.name, err)
		}
		if len(r.objects) == 0 {
			t.Errorf("value set %s: the chart renders no object", r.name)
		}
		seen := map[string]object{}
		for _, o := range r.objects {
			key := o.apiVersion + " " + o.kind + " " + o.name
			if o.name == "" {
				t.Errorf("value set %s: %s has no metadata.name", r.name, o)
			} else if first, dup := seen[key]; dup {
				t.Errorf("value set %s: %s has the name of %s", r.name, o, first)
			}
			seen[key] = o
		}
		var names []string
		for _, o := range r.objects {
			names = append(names, o.kind+"/"+o.name)
		}
		slices.Sort(names)
		t.Logf("value set %s renders %s", r.name, strings.Join(names, ", "))
	})
}
