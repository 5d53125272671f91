package bus_test

import (
	"strings"
	"testing"
	"time"

	"kurier.dev/services/bus"
)

// An event is one by its org, source and id together: the same id from
// two sources, or from two orgs, is two events; ids and sources cannot
// run into each other; and the message id stays short however long they
// are. Its deliveries' webhook-id follows the same identity.
func TestEventIdentity(t *testing.T) {
	long := strings.Repeat("s", 1024)
	ids := map[string]string{}
	for _, e := range []struct{ org, source, id string }{
		{"acme", "/erp-a", "42"},
		{"acme", "/erp-b", "42"},
		{"globex", "/erp-a", "42"},
		{"acme", "a:b", "c"},
		{"acme", "a", "b:c"},
		{"acme", "a", ":bc"},
		{"acme", "1:a", "b"},
		{"acme", long, strings.Repeat("i", 256)},
	} {
		id := bus.EventMsgID(e.org, e.source, e.id)
		if other, taken := ids[id]; taken {
			t.Errorf("%v and %s have the same message id %s", e, other, id)
		}
		ids[id] = e.org + " " + e.source + " " + e.id
		if !strings.HasPrefix(id, e.org+":") || len(id) != len(e.org)+33 {
			t.Errorf("message id of %v: %q", e, id)
		}
		if again := bus.EventMsgID(e.org, e.source, e.id); again != id {
			t.Errorf("message id of %v: %q, then %q", e, id, again)
		}
	}
	a, b := bus.WebhookID("sub1", "/erp-a", "42"), bus.WebhookID("sub1", "/erp-b", "42")
	if a == b || a != bus.WebhookID("sub1", "/erp-a", "42") || !strings.HasPrefix(a, "msg_sub1_") || a == bus.WebhookID("sub2", "/erp-a", "42") {
		t.Errorf("webhook-ids %q, %q", a, b)
	}
}

// A task stored again, as a retry or for later, keeps the trace context
// of the route that made it, so every attempt is in the event's trace.
func TestAgainKeepsTraceContext(t *testing.T) {
	task := bus.DeliveryTask("sub1", 7, time.Now(), []byte(`{}`), "")
	task.Header.Set(bus.HeaderTraceParent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	task.Header.Set(bus.HeaderTraceState, "k=v")
	retry := bus.Again(task, "sub1", bus.RetrySubject("sub1", bus.RetryKey("sub1", task.Header)), 1, 0, time.Now().Add(time.Minute), "at")
	for _, k := range []string{bus.HeaderTraceParent, bus.HeaderTraceState} {
		if got := retry.Header.Get(k); got != task.Header.Get(k) {
			t.Errorf("retry's %s %q, want %q", k, got, task.Header.Get(k))
		}
	}
}
