package chartcheck

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestPods checks that every pod the chart renders is locked down as
// kurier allows (it writes no file and needs no privilege) and has
// requests and, in Deployments, probes.
func TestPods(t *testing.T) {
	eachValueSet(t, func(t *testing.T, r *rendering) {
		type pod struct {
			o      object
			spec   *corev1.PodSpec
			probes bool // long-running: needs liveness and readiness probes
		}
		var pods []pod
		objs, ds := all[*appsv1.Deployment](r)
		for i, d := range ds {
			pods = append(pods, pod{objs[i], &d.Spec.Template.Spec, true})
		}
		objs, ps := all[*corev1.Pod](r)
		for i, p := range ps {
			pods = append(pods, pod{objs[i], &p.Spec, false})
		}
		for _, p := range pods {
			psc := p.spec.SecurityContext
			if psc == nil {
				psc = &corev1.PodSecurityContext{}
			}
			containers := append(slices.Clone(p.spec.InitContainers), p.spec.Containers...)
			for i, c := range containers {
				bad := func(format string, args ...any) {
					t.Errorf("value set %s: %s, container %s: %s", r.name, p.o, c.Name, fmt.Sprintf(format, args...))
				}
				sc := c.SecurityContext
				if sc == nil {
					sc = &corev1.SecurityContext{}
				}
				// The container's setting wins over the pod's.
				if v := or(sc.RunAsNonRoot, psc.RunAsNonRoot); v == nil || !*v {
					bad("runAsNonRoot is not true (securityContext of pod or container)")
				}
				if v := or(sc.RunAsUser, psc.RunAsUser); v == nil || *v == 0 {
					bad("runAsUser is not set to a user other than root")
				}
				if v := or(sc.SeccompProfile, psc.SeccompProfile); v == nil || v.Type != corev1.SeccompProfileTypeRuntimeDefault {
					bad("seccompProfile.type is not RuntimeDefault")
				}
				if v := sc.ReadOnlyRootFilesystem; v == nil || !*v {
					bad("securityContext.readOnlyRootFilesystem is not true")
				}
				if v := sc.AllowPrivilegeEscalation; v == nil || *v {
					bad("securityContext.allowPrivilegeEscalation is not false")
				}
				if sc.Privileged != nil && *sc.Privileged {
					bad("securityContext.privileged is true")
				}
				if caps := sc.Capabilities; caps == nil || !slices.Contains(caps.Drop, "ALL") {
					bad("securityContext.capabilities.drop does not hold ALL")
				} else if len(caps.Add) > 0 {
					bad("securityContext.capabilities.add %v: kurier needs none", caps.Add)
				}
				for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					if q, ok := c.Resources.Requests[res]; !ok || q.IsZero() {
						bad("resources.requests.%s is not set", res)
					}
				}
				if p.probes && i >= len(p.spec.InitContainers) {
					if c.LivenessProbe == nil {
						bad("no livenessProbe")
					}
					if c.ReadinessProbe == nil {
						bad("no readinessProbe")
					}
				}
			}
		}
	})
}

func or[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

// listener is a port kurier listens on.
type listener struct {
	name string // http or grpc
	env  string
	port int32
}

func (l listener) String() string { return fmt.Sprintf("%s :%d", l.name, l.port) }

// listeners answers the ports the container's role listens on: from its
// environment, else the default `kurier <role> -h` prints.
func listeners(t *testing.T, r *rendering, c container) []listener {
	t.Helper()
	flags := roleFlags(t, c.role)
	vars, _ := containerEnv(r, c)
	env := effectiveEnv(vars)
	var ls []listener
	for _, l := range []listener{{name: "http", env: "KURIER_HTTP_LISTEN"}, {name: "grpc", env: "KURIER_GRPC_LISTEN"}} {
		addr, ok := flags[l.env]
		if !ok {
			continue // not a listener of this role
		}
		if v, set := env[l.env]; set {
			if !v.known {
				t.Errorf("%s: %s (%s) cannot be known from the chart", c, l.env, v.from)
				continue
			}
			addr = v.value
		}
		var err error
		if l.port, err = portOf(addr); err != nil {
			t.Errorf("%s: %s: %v", c, l.env, err)
			continue
		}
		ls = append(ls, l)
	}
	return ls
}

// containerPort resolves a port by name or number among the container's ports.
func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if p.Type == intstr.String && cp.Name == p.StrVal || p.Type == intstr.Int && cp.ContainerPort == p.IntVal {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// probes answers a container's probes by kind.
func probes(c *corev1.Container) map[string]*corev1.Probe {
	m := map[string]*corev1.Probe{}
	for kind, p := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
		if p != nil {
			m[kind] = p
		}
	}
	return m
}

// TestProbesAndPorts checks that every probe and containerPort meets a
// port the role listens on: HTTP probes its HTTP listener, the admin's
// gRPC port its gRPC listener.
func TestProbesAndPorts(t *testing.T) {
	eachValueSet(t, func(t *testing.T, r *rendering) {
		for _, c := range kurierContainers(t, r) {
			ls := listeners(t, r, c)
			port := map[string]int32{}
			for _, l := range ls {
				port[l.name] = l.port
				if !slices.ContainsFunc(c.c.Ports, func(cp corev1.ContainerPort) bool { return cp.ContainerPort == l.port }) {
					t.Errorf("%s: no containerPort %d, where %s (%s) listens", c, l.port, l.name, l.env)
				}
			}
			for _, cp := range c.c.Ports {
				if !slices.ContainsFunc(ls, func(l listener) bool { return l.port == cp.ContainerPort }) {
					t.Errorf("%s: containerPort %d (%s) is no port kurier %s listens on (%v)", c, cp.ContainerPort, cp.Name, c.role, ls)
				}
			}
			for kind, p := range probes(c.c) {
				var want int32
				var target intstr.IntOrString
				switch h := p.ProbeHandler; {
				case h.HTTPGet != nil:
					want, target = port["http"], h.HTTPGet.Port
					if h.HTTPGet.Scheme == corev1.URISchemeHTTPS {
						t.Errorf("%s: %s speaks HTTPS to kurier's plain HTTP listener", c, kind)
					}
				case h.GRPC != nil:
					want, target = port["grpc"], intstr.FromInt32(h.GRPC.Port)
				case h.TCPSocket != nil:
					want, target = port["http"], h.TCPSocket.Port
				default:
					continue // exec (kurier healthcheck): it dials what it is told
				}
				got, ok := containerPort(c.c, target)
				switch {
				case !ok:
					t.Errorf("%s: %s port %s is no containerPort of the container", c, kind, target.String())
				case got != want:
					t.Errorf("%s: %s port %s is %d, not the port %d of the role's listener", c, kind, target.String(), got, want)
				}
			}
		}
	})
}

// liveDrop are variables left out when a role runs against the test's
// single NATS server: they size the cluster's streams (KURIER_REPLICAS=3
// cannot be laid down on one server, sizes may exceed this machine's disk),
// and TestEnv has checked that kurier takes their values.
var liveDrop = regexp.MustCompile(`^KURIER_(REPLICAS|.*_MAX_BYTES)$`)

// TestProbesLive starts each role of each rendered Deployment with the
// container's environment against a test NATS server (a `kurier all`) and
// GETs every path its HTTP probes use: each must answer 200, readiness
// within 30s. One role runs at a time.
func TestProbesLive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	rs, err := renderings()
	if err != nil {
		t.Fatal(err)
	}
	const token = "chartcheck-admin-token"
	hub := map[string]string{"http": freeAddr(t), "grpc": freeAddr(t), "nats": freeAddr(t)}
	startKurier(t, "all", hub["http"], []string{
		"KURIER_NATS_LISTEN=" + hub["nats"], "KURIER_HTTP_LISTEN=" + hub["http"], "KURIER_GRPC_LISTEN=" + hub["grpc"],
		"KURIER_DATA_DIR=" + t.TempDir(), "KURIER_ADMIN_TOKEN=" + token,
	})
	ran := map[string]string{} // what was started, by environment and probes: the value set that did
	for _, r := range rs {
		t.Run(r.name, func(t *testing.T) {
			if r.err != nil {
				t.Fatalf("value set %s: the chart does not render: %v", r.name, r.err)
			}
			for _, c := range kurierContainers(t, r) {
				t.Run(c.deploy.name+"/"+c.c.Name, func(t *testing.T) {
					flags := roleFlags(t, c.role)
					vars, _ := containerEnv(r, c)
					envm := map[string]string{}
					for name, v := range effectiveEnv(vars) {
						switch {
						case slices.Contains(fileEnv, name), liveDrop.MatchString(name):
						case v.secret:
							envm[name] = testSecret(name)
						case v.known:
							envm[name] = v.value
						default:
							t.Logf("%s: %s (%s) left out: its value is not known", c, name, v.from)
						}
					}
					// Where the test's NATS and admin API are, whatever the chart says.
					for name, v := range map[string]string{
						"KURIER_NATS_URL": "nats://" + hub["nats"], "KURIER_CONSOLE_ADMIN": hub["grpc"], "KURIER_ADMIN_TOKEN": token,
					} {
						if _, reads := flags[name]; reads {
							envm[name] = v
						}
					}
					var env []string
					for _, name := range sortedKeys(envm) {
						env = append(env, name+"="+envm[name])
					}
					var paths []string
					for _, kind := range sortedKeys(probes(c.c)) {
						if h := probes(c.c)[kind].HTTPGet; h != nil {
							paths = append(paths, kind+" "+h.Path)
						}
					}
					key := c.role + "\n" + strings.Join(env, "\n") + "\n" + strings.Join(paths, "\n")
					if vs, ok := ran[key]; ok {
						t.Skipf("same environment and probes as in value set %s", vs)
					}
					ran[key] = r.name
					// Its listeners on free loopback ports, whatever the chart says.
					addr := freeAddr(t)
					env = append(env, "KURIER_HTTP_LISTEN="+addr)
					if _, reads := flags["KURIER_GRPC_LISTEN"]; reads {
						env = append(env, "KURIER_GRPC_LISTEN="+freeAddr(t))
					}
					startKurier(t, c.role, addr, env)
					for _, p := range paths {
						kind, path, _ := strings.Cut(p, " ")
						if err := getOK(addr, path, 30*time.Second); err != nil {
							t.Errorf("%s: %s GET %s: %v", c, kind, path, err)
						}
					}
				})
			}
		})
	}
}

// getOK GETs http://addr/path until it answers 200, for at most wait
// while it answers 503 (not ready yet) or not at all.
func getOK(addr, path string, wait time.Duration) error {
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(wait)
	for {
		res, err := client.Get("http://" + addr + path)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", res.Status, strings.TrimSpace(string(body)))
			if res.StatusCode != http.StatusServiceUnavailable {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no 200 within %v: last %w", wait, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
