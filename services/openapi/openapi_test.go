package openapi

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	ops, err := operations()
	if err != nil {
		t.Fatal(err)
	}
	var all, queue []string
	for _, o := range ops {
		all = append(all, o.pattern())
		if o.tags[0] == "queue" || o.tags[0] == Process {
			queue = append(queue, o.pattern())
		}
	}
	every := func(string) bool { return true }
	queueRole := func(tag string) bool { return tag == "queue" || tag == Process }
	for _, c := range []struct {
		name     string
		patterns []string
		serves   func(string) bool
		want     string // in the error, or "" for none
	}{
		{"all", all, every, ""},
		{"one role", queue, queueRole, ""},
		{"one missing", all[1:], every, all[0] + " is documented but not served"},
		{"one role's missing", queue[1:], queueRole, queue[0] + " is documented but not served"},
		{"one more", append(all, "GET /v1/secret"), every, "GET /v1/secret is served but not documented"},
		{"another method", append(queue, "PUT /api/queues"), queueRole, "PUT /api/queues is served but not documented"},
	} {
		err := Check(c.patterns, c.serves)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if len(queue) != 9 {
		t.Errorf("%d operations of the queue role, want 9: %v", len(queue), queue)
	}
}
