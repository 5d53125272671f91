package natstest

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
)

// Tasks reads what DELIVERIES holds, as messages per subject, but the
// dispatchers' tail marker, which stays while they run and after.
func Tasks(ctx context.Context, js jetstream.JetStream) (map[string]uint64, error) {
	st, err := js.Stream(ctx, bus.StreamDeliveries)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", bus.StreamDeliveries, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", bus.StreamDeliveries, err)
	}
	delete(info.State.Subjects, bus.TailSubject)
	return info.State.Subjects, nil
}
