package kvcache

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/natstest"
)

func text(_ string, v []byte) (string, bool, error) {
	return string(v), !strings.HasPrefix(string(v), "skip"), nil
}

// openOrgs opens the orgs bucket and a cache of it with text.
func openOrgs(t *testing.T, conn *jet.Conn) (jetstream.KeyValue, *Cache[string]) {
	t.Helper()
	ctx := context.Background()
	kv, err := jet.Bucket(ctx, conn.JS, bus.BucketOrgs)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := Open(ctx, conn.JS, kv, text, natstest.Log)
	if err != nil {
		t.Fatal(err)
	}
	return kv, cache
}

// TestListFollowsEveryNode: a listing shows every write made before it,
// puts, deletes and purges alike, and keeps doing so within seconds while
// each node of a three-node cluster is killed and restarted in turn.
func TestListFollowsEveryNode(t *testing.T) {
	l := bus.DefaultLimits()
	l.Replicas = 3
	c := natstest.StartCluster(t, 3)
	conn := c.Connect(t, l)
	ctx := context.Background()
	kv, cache := openOrgs(t, conn)
	want := map[string]bool{}
	check := func(what string) {
		t.Helper()
		// A watch whose server died would take some 15 s to come back by
		// itself; a listing renews it after a second.
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		got, err := cache.List(lctx, func(string) bool { return true })
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		var w []string
		for v := range want {
			w = append(w, v)
		}
		slices.Sort(got)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Fatalf("%s: listed %v, want %v", what, got, w)
		}
	}
	put := func(k, v string) {
		t.Helper()
		natstest.WaitForErr(t, 30*time.Second, "put "+k, func() error {
			_, err := kv.Put(ctx, k, []byte(v))
			return err
		})
	}
	check("empty")
	for i := range 5 {
		put(fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
		want[fmt.Sprintf("v%d", i)] = true
		check("after a put")
	}
	put("k0", "v0b")
	delete(want, "v0")
	want["v0b"] = true
	check("after an update")
	put("k9", "skip me")
	check("beside an entry of another kind")
	if err := kv.Delete(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	delete(want, "v1")
	check("after a delete")
	if err := kv.Purge(ctx, "k2"); err != nil {
		t.Fatal(err)
	}
	delete(want, "v2")
	check("after a purge")

	for i := range c.Servers {
		c.Kill(i)
		put(fmt.Sprintf("n%d", i), fmt.Sprintf("without n%d", i))
		want[fmt.Sprintf("without n%d", i)] = true
		check(fmt.Sprintf("with n%d down", i+1))
		c.Restart(t, i)
	}
}

// TestGetFollowsTheWatch: Get answers from memory what the watch brought,
// puts and deletes alike, and never an entry decode left out.
func TestGetFollowsTheWatch(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	ctx := context.Background()
	kv, cache := openOrgs(t, conn)
	has := func(k, want string) func() bool {
		return func() bool { v, ok := cache.Get(k); return ok == (want != "") && v == want }
	}
	// b before a: once a is in, b has been seen.
	for _, kv2 := range [][2]string{{"b", "skip this"}, {"a", "one"}} {
		if _, err := kv.Put(ctx, kv2[0], []byte(kv2[1])); err != nil {
			t.Fatal(err)
		}
	}
	natstest.WaitFor(t, 5*time.Second, "a put", has("a", "one"))
	if _, ok := cache.Get("b"); ok {
		t.Error("an entry decode left out was answered")
	}
	if err := kv.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 5*time.Second, "a delete", has("a", ""))
}
