package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/subs"
)

// migrate moves what the layout before partitions left behind: the tasks
// on kurier.deliver.<sub> and kurier.lane.<sub> go into their partitions
// (a lane's retry keeps its time), the consumers that read them go, and an
// ordered subscription's own consumer of EVENTS becomes its cursor.
func migrate(ctx context.Context, js jetstream.JetStream, store *subs.Store, log *slog.Logger) error {
	for _, stream := range []string{bus.StreamDeliveries, bus.StreamEvents} {
		st, err := bus.Stream(ctx, js, stream)
		if err != nil {
			return err
		}
		names := st.ConsumerNames(ctx)
		var legacy []string
		for name := range names.Name() {
			if name == "deliveries" || strings.HasPrefix(name, "lane-") || strings.HasPrefix(name, "deliver-") {
				legacy = append(legacy, name)
			}
		}
		if err := names.Err(); err != nil {
			return fmt.Errorf("consumers of %s: %w", stream, err)
		}
		for _, name := range legacy {
			if id, ok := strings.CutPrefix(name, "deliver-"); ok && stream == bus.StreamEvents {
				if err := cursorFrom(ctx, js, store, id, name); err != nil {
					return err
				}
			}
			if err := js.DeleteConsumer(ctx, stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("remove consumer %s: %w", name, err)
			}
			log.Info("consumer of the layout before partitions removed", "stream", stream, "consumer", name)
		}
	}
	st, err := bus.Stream(ctx, js, bus.StreamDeliveries)
	if err != nil {
		return err
	}
	left := 0
	for _, filter := range []string{bus.LegacyDeliverFilter, bus.LegacyLaneFilter} {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
		if err != nil {
			return fmt.Errorf("deliveries stream: %w", err)
		}
		for _, n := range info.State.Subjects {
			left += int(n)
		}
	}
	if left == 0 {
		return nil
	}
	cons, err := js.CreateConsumer(ctx, bus.StreamDeliveries, jetstream.ConsumerConfig{
		FilterSubjects: []string{bus.LegacyDeliverFilter, bus.LegacyLaneFilter}, AckPolicy: jetstream.AckExplicitPolicy,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return fmt.Errorf("read tasks of the layout before partitions: %w", err)
	}
	defer func() {
		_ = js.DeleteConsumer(context.WithoutCancel(ctx), bus.StreamDeliveries, cons.CachedInfo().Name)
	}()
	moved := 0
	for {
		tasks, err := fetchAll(cons, 1000)
		if err != nil {
			return fmt.Errorf("read tasks of the layout before partitions: %w", err)
		}
		if len(tasks) == 0 {
			break
		}
		for _, m := range tasks {
			sub := bus.TaskSub(m.Subject())
			at, _ := time.Parse(time.RFC3339Nano, m.Headers().Get(bus.HeaderNotBefore))
			subject := bus.DeliverSubject(sub)
			if time.Until(at) > time.Second {
				subject = bus.RetrySubject(sub, bus.RetryKey(sub, m.Headers()))
			} else {
				at = time.Time{}
			}
			if _, err := js.PublishMsg(ctx, bus.Again(msgOf(m), sub, subject, attemptsOf(m.Headers()), 0, at, "moved")); err != nil && !jet.IsDuplicate(err) {
				return fmt.Errorf("move task: %w", err)
			}
			_ = m.Ack()
			moved++
		}
	}
	log.Info("tasks of the layout before partitions moved into them", "tasks", moved)
	return nil
}

// cursorFrom starts an ordered subscription's cursor where its consumer
// of EVENTS had got to.
func cursorFrom(ctx context.Context, js jetstream.JetStream, store *subs.Store, id, consumer string) error {
	c, err := js.Consumer(ctx, bus.StreamEvents, consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("consumer %s: %w", consumer, err)
	}
	floor := c.CachedInfo().AckFloor.Stream
	_, _, err = store.UpdateState(ctx, id, func(st *subs.PingState) error {
		if st.Cursor >= floor {
			return subs.ErrSkip
		}
		st.Cursor = floor
		return nil
	})
	if err != nil && !errors.Is(err, subs.ErrSkip) && !errors.Is(err, subs.ErrNotFound) {
		return err
	}
	return nil
}
