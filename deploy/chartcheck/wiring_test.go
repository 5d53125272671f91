package chartcheck

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestWiring checks that what points at pods, Deployments and Services
// points at ones the chart renders: a Service, PDB or NetworkPolicy that
// selects nothing, or an HPA or Ingress naming nothing, fails silently in
// a cluster.
func TestWiring(t *testing.T) {
	eachValueSet(t, func(t *testing.T, r *rendering) {
		dObjs, ds := all[*appsv1.Deployment](r)
		// selected answers the Deployments whose pods sel selects.
		selected := func(sel labels.Selector) (names []string, hit []*appsv1.Deployment) {
			for _, d := range ds {
				if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
					names, hit = append(names, d.Name), append(hit, d)
				}
			}
			return names, hit
		}
		labelSelector := func(o object, s *metav1.LabelSelector) labels.Selector {
			sel, err := metav1.LabelSelectorAsSelector(s)
			if err != nil {
				t.Errorf("value set %s: %s: selector: %v", r.name, o, err)
				return labels.Nothing()
			}
			return sel
		}
		for i, d := range ds {
			if d.Spec.Selector == nil || !labelSelector(dObjs[i], d.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("value set %s: %s: spec.selector does not select the pod template's labels", r.name, dObjs[i])
			}
		}

		objs, svcs := all[*corev1.Service](r)
		for i, s := range svcs {
			if len(s.Spec.Selector) == 0 {
				t.Errorf("value set %s: %s has no selector", r.name, objs[i])
				continue
			}
			names, hit := selected(labels.SelectorFromSet(s.Spec.Selector))
			if len(hit) != 1 {
				t.Errorf("value set %s: %s selects the pods of %d Deployments %v, not of one", r.name, objs[i], len(hit), names)
				continue
			}
			for _, p := range s.Spec.Ports {
				target := p.TargetPort
				if target == (intstr.IntOrString{}) {
					target = intstr.FromInt32(p.Port) // as the API server defaults it
				}
				if !podPort(hit[0], target) {
					t.Errorf("value set %s: %s port %s: targetPort %s is no containerPort of Deployment %s", r.name, objs[i], p.Name, target.String(), hit[0].Name)
				}
			}
		}

		objs, pdbs := all[*policyv1.PodDisruptionBudget](r)
		for i, p := range pdbs {
			if _, hit := selected(labelSelector(objs[i], p.Spec.Selector)); len(hit) == 0 {
				t.Errorf("value set %s: %s selects the pods of no Deployment", r.name, objs[i])
			}
		}
		objs, nps := all[*networkingv1.NetworkPolicy](r)
		for i, np := range nps {
			_, hit := selected(labelSelector(objs[i], &np.Spec.PodSelector))
			if len(hit) == 0 {
				t.Errorf("value set %s: %s podSelector selects the pods of no Deployment", r.name, objs[i])
			}
			// A port that none of its pods has opens nothing.
			for j, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					if p.Port != nil && !slices.ContainsFunc(hit, func(d *appsv1.Deployment) bool { return podPort(d, *p.Port) }) {
						t.Errorf("value set %s: %s ingress[%d] port %s is no containerPort of the pods it selects", r.name, objs[i], j, p.Port.String())
					}
				}
			}
		}

		// The console's only backend: the admin API's gRPC port, through its Service.
		for _, c := range kurierContainers(t, r) {
			if c.role != "console" {
				continue
			}
			vars, _ := containerEnv(r, c)
			v, ok := effectiveEnv(vars)["KURIER_CONSOLE_ADMIN"]
			if !ok || !v.known {
				t.Errorf("%s: KURIER_CONSOLE_ADMIN is not set to a known address", c)
				continue
			}
			if err := adminService(t, r, svcs, v.value); err != nil {
				t.Errorf("%s: KURIER_CONSOLE_ADMIN %q: %v", c, v.value, err)
			}
		}

		objs, hpas := all[*autoscalingv2.HorizontalPodAutoscaler](r)
		for i, h := range hpas {
			ref := h.Spec.ScaleTargetRef
			if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || !hasName(ds, ref.Name) {
				t.Errorf("value set %s: %s scaleTargetRef %s %s %s is no rendered Deployment", r.name, objs[i], ref.APIVersion, ref.Kind, ref.Name)
			}
		}

		objs, ings := all[*networkingv1.Ingress](r)
		for i, ing := range ings {
			backends := map[string]*networkingv1.IngressBackend{}
			if ing.Spec.DefaultBackend != nil {
				backends["defaultBackend"] = ing.Spec.DefaultBackend
			}
			for _, rule := range ing.Spec.Rules {
				if rule.HTTP == nil {
					continue
				}
				for _, p := range rule.HTTP.Paths {
					backends[fmt.Sprintf("host %q path %q", rule.Host, p.Path)] = &p.Backend
				}
			}
			for where, b := range backends {
				if err := serviceBackend(svcs, b); err != nil {
					t.Errorf("value set %s: %s, %s: %v", r.name, objs[i], where, err)
				}
			}
		}
	})
}

// podPort tells whether a port, by name or number, is a containerPort of
// the Deployment's pods.
func podPort(d *appsv1.Deployment, p intstr.IntOrString) bool {
	for i := range d.Spec.Template.Spec.Containers {
		if _, ok := containerPort(&d.Spec.Template.Spec.Containers[i], p); ok {
			return true
		}
	}
	return false
}

func hasName[T interface{ GetName() string }](objs []T, name string) bool {
	for _, o := range objs {
		if o.GetName() == name {
			return true
		}
	}
	return false
}

// serviceBackend checks that an Ingress backend is a rendered Service and
// one of its ports.
func serviceBackend(svcs []*corev1.Service, b *networkingv1.IngressBackend) error {
	if b.Service == nil {
		return fmt.Errorf("backend is no Service")
	}
	for _, s := range svcs {
		if s.Name != b.Service.Name {
			continue
		}
		var ports []string
		for _, p := range s.Spec.Ports {
			if b.Service.Port.Name != "" && p.Name == b.Service.Port.Name || b.Service.Port.Name == "" && p.Port == b.Service.Port.Number {
				return nil
			}
			ports = append(ports, fmt.Sprintf("%s:%d", p.Name, p.Port))
		}
		return fmt.Errorf("Service %s has no port %s (it has %s)", s.Name, portName(b.Service.Port), strings.Join(ports, ", "))
	}
	return fmt.Errorf("Service %s is not rendered by the chart", b.Service.Name)
}

func portName(p networkingv1.ServiceBackendPort) string {
	if p.Name != "" {
		return p.Name
	}
	return fmt.Sprint(p.Number)
}

// adminService checks that addr, host:port, is a rendered Service's port
// that leads to the gRPC listener of the admin role.
func adminService(t *testing.T, r *rendering, svcs []*corev1.Service, addr string) error {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	// A Service's in-cluster names: name, name.namespace, name.namespace.svc[.cluster.local].
	name, _, _ := strings.Cut(host, ".")
	i := slices.IndexFunc(svcs, func(s *corev1.Service) bool { return s.Name == name })
	if i < 0 {
		return fmt.Errorf("%s is no rendered Service", name)
	}
	svc := svcs[i]
	j := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return fmt.Sprint(p.Port) == port })
	if j < 0 {
		return fmt.Errorf("Service %s has no port %s", name, port)
	}
	target := svc.Spec.Ports[j].TargetPort
	if target == (intstr.IntOrString{}) {
		target = intstr.FromInt32(svc.Spec.Ports[j].Port)
	}
	for _, c := range kurierContainers(t, r) {
		got, ok := containerPort(c.c, target)
		if !ok || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(c.deploy.obj.(*appsv1.Deployment).Spec.Template.Labels)) {
			continue
		}
		for _, l := range listeners(t, r, c) {
			if c.role == "admin" && l.name == "grpc" && l.port == got {
				return nil
			}
		}
		return fmt.Errorf("Service %s port %s leads to containerPort %d of %s, not to the admin's gRPC listener", name, port, got, c.deploy)
	}
	return fmt.Errorf("Service %s port %s leads to no containerPort", name, port)
}
