package jet_test

import (
	"context"
	"fmt"
	"testing"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/natstest"
)

func TestLastMsgs(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	ctx := context.Background()
	kv, err := jet.Bucket(ctx, conn.JS, bus.BucketPersons)
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for i := range 2500 {
		key := fmt.Sprintf("k%d", i)
		subjects = append(subjects, bus.KVSubject(bus.BucketPersons, key))
		if i%2 == 0 {
			if _, err := kv.Put(ctx, key, []byte(key)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := kv.Delete(ctx, "k0"); err != nil {
		t.Fatal(err)
	}
	got, err := jet.LastMsgs(ctx, conn.NC, bus.KVStream(bus.BucketPersons), subjects)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1250 {
		t.Fatalf("%d messages, want 1250", len(got))
	}
	if m := got[subjects[2498]]; m == nil || string(m.Data) != "k2498" {
		t.Fatalf("k2498: %v", m)
	}
	if m := got[subjects[0]]; m == nil || m.Header.Get("KV-Operation") != "DEL" {
		t.Fatalf("k0, deleted: %v", m)
	}
	if _, ok := got[subjects[1]]; ok {
		t.Fatal("an absent key answered")
	}
	none, err := jet.LastMsgs(ctx, conn.NC, bus.KVStream(bus.BucketPersons), subjects[1:2])
	if err != nil || len(none) != 0 {
		t.Fatalf("one absent key: %v, %v", none, err)
	}
}
