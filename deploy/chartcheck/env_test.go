package chartcheck

import (
	"fmt"
	"math"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// otherEnv are the only variables beyond those `kurier <role> -h` lists
// that a container may set.
var otherEnv = map[string]bool{
	// The OpenTelemetry SDK's, as README.md documents them (the table
	// of variables, at OTEL_EXPORTER_OTLP_ENDPOINT, and Tracing).
	"OTEL_EXPORTER_OTLP_ENDPOINT":        true,
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": true,
	"OTEL_TRACES_EXPORTER":               true,
	"OTEL_SERVICE_NAME":                  true,
	"OTEL_SDK_DISABLED":                  true,
	"OTEL_EXPORTER_OTLP_HEADERS":         true,
	"OTEL_RESOURCE_ATTRIBUTES":           true,
	"OTEL_TRACES_SAMPLER":                true,
	"OTEL_TRACES_SAMPLER_ARG":            true,
	"OTEL_EXPORTER_OTLP_PROTOCOL":        true,
	"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": true,
	// The Go runtime's, which fit the process to the container's limits.
	"GOMEMLIMIT": true,
	"GOMAXPROCS": true,
}

// secretEnv carry secrets: only ever from valueFrom.secretKeyRef, never a
// literal in the Deployment or a ConfigMap, where anyone who may read
// those reads them. (KURIER_NATS_USER may be either.)
var secretEnv = []string{"KURIER_ADMIN_TOKEN", "KURIER_NATS_PASSWORD", "KURIER_NATS_TOKEN", "KURIER_CONSOLE_KEY"}

// fileEnv name files, which must be mounted from a Secret or ConfigMap.
var fileEnv = []string{
	"KURIER_NATS_CREDS", "KURIER_NATS_TLS_CA", "KURIER_NATS_TLS_CERT", "KURIER_NATS_TLS_KEY",
	"KURIER_GRPC_TLS_CERT", "KURIER_GRPC_TLS_KEY", "KURIER_CONSOLE_ADMIN_CA",
}

// container is a kurier container of a rendered Deployment.
type container struct {
	vs     string // the value set
	deploy object
	pod    *corev1.PodSpec
	c      *corev1.Container
	role   string // its first argument
}

func (c container) String() string {
	return fmt.Sprintf("value set %s: %s, container %s (role %s)", c.vs, c.deploy, c.c.Name, c.role)
}

// kurierContainers are the containers of every rendered Deployment: all
// run kurier, with the role as first argument.
func kurierContainers(t *testing.T, r *rendering) []container {
	t.Helper()
	var cs []container
	objs, ds := all[*appsv1.Deployment](r)
	for i, d := range ds {
		for j := range d.Spec.Template.Spec.Containers {
			c := &d.Spec.Template.Spec.Containers[j]
			if len(c.Args) == 0 {
				t.Errorf("value set %s: %s, container %s: no args, so no role", r.name, objs[i], c.Name)
				continue
			}
			cs = append(cs, container{r.name, objs[i], &d.Spec.Template.Spec, c, c.Args[0]})
		}
	}
	return cs
}

// envVar is a variable as a container gets it.
type envVar struct {
	name   string
	from   string // where it comes from, for messages
	value  string // when known
	known  bool   // a literal, from a rendered ConfigMap, or computed as the kubelet would
	secret bool   // from valueFrom.secretKeyRef
}

// containerEnv answers a container's variables in the order Kubernetes
// sets them (envFrom, then env: a later one wins), and what cannot be
// resolved among the chart's objects.
func containerEnv(r *rendering, c container) (vars []envVar, problems []string) {
	cms := map[string]*corev1.ConfigMap{}
	_, cmList := all[*corev1.ConfigMap](r)
	for _, cm := range cmList {
		cms[cm.Name] = cm
	}
	secrets := map[string]*corev1.Secret{}
	_, sList := all[*corev1.Secret](r)
	for _, s := range sList {
		secrets[s.Name] = s
	}
	for _, ef := range c.c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm, ok := cms[ef.ConfigMapRef.Name]
			if !ok {
				problems = append(problems, fmt.Sprintf("envFrom ConfigMap %s is not rendered by the chart: its variables cannot be checked", ef.ConfigMapRef.Name))
				continue
			}
			for _, k := range sortedKeys(cm.Data) {
				vars = append(vars, envVar{name: ef.Prefix + k, from: "envFrom ConfigMap " + cm.Name, value: cm.Data[k], known: true})
			}
		case ef.SecretRef != nil:
			s, ok := secrets[ef.SecretRef.Name]
			if !ok {
				problems = append(problems, fmt.Sprintf("envFrom Secret %s is not rendered by the chart: its variables cannot be checked (name each with valueFrom.secretKeyRef)", ef.SecretRef.Name))
				continue
			}
			keys := append(sortedKeys(s.StringData), sortedKeys(s.Data)...)
			for _, k := range keys {
				vars = append(vars, envVar{name: ef.Prefix + k, from: "envFrom Secret " + s.Name})
			}
		}
	}
	for _, e := range c.c.Env {
		v := envVar{name: e.Name, from: "env", value: e.Value, known: e.ValueFrom == nil}
		switch vf := e.ValueFrom; {
		case vf == nil:
		case vf.SecretKeyRef != nil:
			v.from, v.secret = fmt.Sprintf("Secret %s key %s", vf.SecretKeyRef.Name, vf.SecretKeyRef.Key), true
		case vf.ConfigMapKeyRef != nil:
			v.from = fmt.Sprintf("ConfigMap %s key %s", vf.ConfigMapKeyRef.Name, vf.ConfigMapKeyRef.Key)
			if cm, ok := cms[vf.ConfigMapKeyRef.Name]; ok {
				v.value, v.known = cm.Data[vf.ConfigMapKeyRef.Key]
			}
		case vf.ResourceFieldRef != nil:
			v.from = "resourceFieldRef " + vf.ResourceFieldRef.Resource
			v.value, v.known = resourceValue(c.c, vf.ResourceFieldRef)
		case vf.FieldRef != nil:
			v.from = "fieldRef " + vf.FieldRef.FieldPath
			v.value, v.known = map[string]string{
				"metadata.name": c.deploy.name + "-0", "metadata.namespace": namespace, "status.podIP": "127.0.0.1",
			}[vf.FieldRef.FieldPath]
		}
		vars = append(vars, v)
	}
	return vars, problems
}

// resourceValue is what the kubelet sets for a resourceFieldRef: the
// quantity divided by the divisor, rounded up; unknown for a limit that
// is not set (the node's then).
func resourceValue(c *corev1.Container, ref *corev1.ResourceFieldSelector) (string, bool) {
	list, name, _ := strings.Cut(ref.Resource, ".")
	q, ok := map[string]corev1.ResourceList{"limits": c.Resources.Limits, "requests": c.Resources.Requests}[list][corev1.ResourceName(name)]
	if !ok {
		return "", false
	}
	div := resource.MustParse("1")
	if !ref.Divisor.IsZero() {
		div = ref.Divisor
	}
	return strconv.FormatInt(int64(math.Ceil(q.AsApproximateFloat64()/div.AsApproximateFloat64())), 10), true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// effectiveEnv is the container's environment by name, later winning.
func effectiveEnv(vars []envVar) map[string]envVar {
	m := map[string]envVar{}
	for _, v := range vars {
		m[v.name] = v
	}
	return m
}

// testSecret stands in for a secret's value.
func testSecret(name string) string { return "chartcheck-" + strings.ToLower(name) }

// TestEnv checks that every variable of every container is one kurier
// reads for the container's role (or otherEnv), and that kurier takes
// their values: `kurier <role> -h` refuses a malformed one.
func TestEnv(t *testing.T) {
	eachValueSet(t, func(t *testing.T, r *rendering) {
		for _, c := range kurierContainers(t, r) {
			flags := roleFlags(t, c.role)
			vars, problems := containerEnv(r, c)
			for _, p := range problems {
				t.Errorf("%s: %s", c, p)
			}
			// A later entry hides an earlier one, and server-side apply,
			// Helm 4's default, refuses the object.
			for i, e := range c.c.Env {
				if j := slices.IndexFunc(c.c.Env[:i], func(o corev1.EnvVar) bool { return o.Name == e.Name }); j >= 0 {
					t.Errorf("%s: env[%d] sets %s again, after env[%d]", c, i, e.Name, j)
				}
			}
			env := []string{"PATH=/usr/bin:/bin"}
			for _, v := range vars {
				if _, ok := flags[v.name]; !ok && !otherEnv[v.name] {
					t.Errorf("%s: %s (%s) is not a variable kurier %s reads", c, v.name, v.from, c.role)
				}
				switch {
				case v.secret:
					env = append(env, v.name+"="+testSecret(v.name))
				case v.known:
					env = append(env, v.name+"="+v.value)
				}
			}
			cmd := exec.Command(binary(t), c.role, "-h")
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s: kurier %s refuses the container's environment: %v: %s", c, c.role, err, firstLines(out))
			}
		}
	})
}

// firstLines is what kurier, or the Go runtime, says first when it
// refuses to start: the runtime names the variable, then what is wrong.
func firstLines(b []byte) string {
	lines := strings.SplitN(strings.TrimSpace(string(b)), "\n", 3)
	return strings.Join(lines[:min(2, len(lines))], " ")
}

// TestSecrets checks that secrets come from Secrets the chart does not
// make, and that the files kurier is told to read are mounted from a
// Secret or ConfigMap.
func TestSecrets(t *testing.T) {
	eachValueSet(t, func(t *testing.T, r *rendering) {
		// A Secret in the chart holds what came from values: in the
		// release's history, in CI logs, in whatever keeps the values.
		objs, secrets := all[*corev1.Secret](r)
		for i, s := range secrets {
			t.Errorf("value set %s: %s: the chart renders a Secret (keys %v); secrets belong in Secrets made beside the chart and named in its values", r.name, objs[i], append(sortedKeys(s.Data), sortedKeys(s.StringData)...))
		}
		for _, c := range kurierContainers(t, r) {
			vars, _ := containerEnv(r, c)
			for _, v := range vars {
				switch {
				case slices.Contains(secretEnv, v.name) && !v.secret:
					t.Errorf("%s: %s comes from %s: a secret must come from valueFrom.secretKeyRef, never a literal value", c, v.name, v.from)
				case slices.Contains(fileEnv, v.name):
					if err := mounted(c, v); err != nil {
						t.Errorf("%s: %s (%s): %v", c, v.name, v.from, err)
					}
				}
			}
		}
	})
}

// mounted tells whether a variable names a file under a volumeMount of
// its container whose volume is a Secret or ConfigMap of the pod.
func mounted(c container, v envVar) error {
	if !v.known {
		return fmt.Errorf("its value, a file, cannot be known from the chart")
	}
	p := path.Clean(v.value)
	if !path.IsAbs(p) {
		return fmt.Errorf("%q is no absolute path", v.value)
	}
	for _, m := range c.c.VolumeMounts {
		rel, ok := under(p, m.MountPath)
		if !ok {
			continue
		}
		i := slices.IndexFunc(c.pod.Volumes, func(vol corev1.Volume) bool { return vol.Name == m.Name })
		if i < 0 {
			return fmt.Errorf("%q is under volumeMount %s (%s), whose volume the pod does not have", v.value, m.Name, m.MountPath)
		}
		vol := c.pod.Volumes[i]
		var items []corev1.KeyToPath
		switch {
		case vol.Secret != nil:
			items = vol.Secret.Items
		case vol.ConfigMap != nil:
			items = vol.ConfigMap.Items
		case vol.Projected != nil:
			for _, s := range vol.Projected.Sources {
				switch {
				case s.Secret != nil:
					items = append(items, s.Secret.Items...)
				case s.ConfigMap != nil:
					items = append(items, s.ConfigMap.Items...)
				default:
					return fmt.Errorf("%q is on projected volume %s, which projects more than Secrets and ConfigMaps", v.value, vol.Name)
				}
			}
		default:
			return fmt.Errorf("%q is on volume %s, which is no Secret or ConfigMap", v.value, vol.Name)
		}
		// Listed items are the only files of the volume.
		if m.SubPath == "" && len(items) > 0 && !slices.ContainsFunc(items, func(k corev1.KeyToPath) bool { return path.Clean(k.Path) == rel }) {
			return fmt.Errorf("%q is not among the items volume %s projects", v.value, vol.Name)
		}
		return nil
	}
	return fmt.Errorf("%q is under no volumeMount of the container", v.value)
}

// under answers p relative to dir, when p is dir or within it.
func under(p, dir string) (string, bool) {
	dir = path.Clean(dir)
	if p == dir {
		return ".", true
	}
	rel, ok := strings.CutPrefix(p, strings.TrimSuffix(dir, "/")+"/")
	return rel, ok
}
