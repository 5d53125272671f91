package main

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

// formatWords and orderingWords are the values of --format and the
// ordering sub get shows.
var (
	formatWords   = enumWords{kind: "format", desc: adminv1.PayloadFormat(0).Descriptor(), prefix: "PAYLOAD_FORMAT_"}
	orderingWords = enumWords{kind: "ordering", desc: adminv1.Ordering(0).Descriptor(), prefix: "ORDERING_"}
)

// payloadFlags are the settings of payload subscriptions, the same flags
// on sub create and sub update. Each flag given writes its value into sub
// and its field's path into mask, so that an update changes those fields
// and no others.
type payloadFlags struct {
	sub   *adminv1.Subscription
	mask  []string // update_mask paths, each once
	given []string // the flags given, for messages
}

// bindPayloadFlags registers the payload flags on fs. clears says how the
// list flags are emptied, which only sub update needs.
func bindPayloadFlags(fs *flag.FlagSet, clears bool) *payloadFlags {
	p := &payloadFlags{sub: &adminv1.Subscription{}}
	empty := func(what string) string {
		if clears {
			return `; "" ` + what
		}
		return ""
	}
	p.flag(fs, "table", "table", "the document `kind` whose fields are sent, passed on as table= in the GET part",
		func(v string) error { p.sub.Table = v; return nil })
	p.flag(fs, "field", "fields", "send only these top-level `fields` of the event's data (by default all); comma-separated or repeated"+empty("sends all"),
		func(v string) error {
			if strings.TrimSpace(v) == "" {
				p.sub.Fields = nil
			}
			for f := range listItems(v) {
				if !slices.Contains(p.sub.Fields, f) {
					p.sub.Fields = append(p.sub.Fields, f)
				}
			}
			return nil
		})
	p.flag(fs, "conditions", "conditions", "a `filter` passed on as conditions= in the GET part; Kurier stores it and does not evaluate it",
		func(v string) error { p.sub.Conditions = v; return nil })
	attr := func(secret bool) func(string) error {
		return func(v string) error {
			if v == "" {
				p.sub.Attributes = nil
				return nil
			}
			name, value, ok := strings.Cut(v, "=")
			if !ok || name == "" {
				return fmt.Errorf("%q is not name=value", v)
			}
			p.sub.Attributes = append(p.sub.Attributes, &adminv1.Attribute{Name: name, Value: value, Secret: secret})
			return nil
		}
	}
	p.flag(fs, "attr", "attributes", "an attribute passed on as `name=value` in the GET part, and in flat bodies; repeated, in order with --secret-attr"+empty("removes all"),
		attr(false))
	p.flag(fs, "secret-attr", "attributes", "an attribute as with --attr, whose `name=value` the delivery log shows as name=***", attr(true))
	p.flag(fs, "header", "headers", "an extra request `header`, \"Name: value\"; repeated"+empty("removes all"),
		func(v string) error {
			if v == "" {
				p.sub.Headers = nil
				return nil
			}
			name, value, ok := strings.Cut(v, ":")
			if name = strings.TrimSpace(name); !ok || name == "" {
				return fmt.Errorf("%q is not \"Name: value\"", v)
			}
			p.sub.Headers = append(p.sub.Headers, &adminv1.Header{Name: name, Value: strings.TrimSpace(value)})
			return nil
		})
	p.flag(fs, "timeout", "timeout", "the `duration` each request may take, 1s to 60s (default 15s); the global --timeout goes before the command words here",
		func(v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%q is not a duration such as 15s", v)
			}
			p.sub.Timeout = durationpb.New(d)
			return nil
		})
	p.flag(fs, "format", "payload_format", "the body's `format`: "+strings.Join(formatWords.allowed(), " or ")+" (default standard)",
		func(v string) error {
			n, err := formatWords.parse(strings.TrimSpace(v))
			if err != nil {
				return err
			}
			p.sub.PayloadFormat = adminv1.PayloadFormat(n)
			return nil
		})
	fs.BoolFunc("ordered", "send one request at a time, in event order, retries included (--ordered=false: up to --max-in-flight at once)",
		func(v string) error {
			on, err := strconv.ParseBool(v)
			if err != nil {
				return err
			}
			p.sub.Ordering = adminv1.Ordering_ORDERING_CONCURRENT
			if on {
				p.sub.Ordering = adminv1.Ordering_ORDERING_ORDERED
			}
			p.set("ordered", "ordering")
			return nil
		})
	p.flag(fs, "max-in-flight", "max_in_flight", "at most `N` requests at once, 1 to 100 (default 10)",
		func(v string) error {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return fmt.Errorf("%q is not a number", v)
			}
			p.sub.MaxInFlight = uint32(n)
			return nil
		})
	p.flag(fs, "rate-limit", "rate_limit_per_second", "at most `N` requests a second, 0 to 10000, across all dispatchers; the rest wait (default 0: no limit)",
		func(v string) error {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return fmt.Errorf("%q is not a number", v)
			}
			p.sub.RateLimitPerSecond = uint32(n)
			return nil
		})
	p.flag(fs, "rate-burst", "rate_limit_burst", "with --rate-limit, up to `N` requests at once before the limit applies (default 0: the limit itself)",
		func(v string) error {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return fmt.Errorf("%q is not a number", v)
			}
			p.sub.RateLimitBurst = uint32(n)
			return nil
		})
	p.flag(fs, "retry", "retry_schedule", "the `delays` before each retry, such as 0,5s,5m,2h,1d; comma-separated or repeated (by default 0,5s,5m,30m,2h,5h,10h,14h,20h,24h, each ±20%)"+empty("restores the default"),
		func(v string) error {
			if strings.TrimSpace(v) == "" {
				p.sub.RetrySchedule = nil
			}
			for item := range listItems(v) {
				d, err := parseSpan(item)
				if err != nil {
					return fmt.Errorf("%q is not a delay such as 0, 5s, 5m, 2h or 1d", item)
				}
				p.sub.RetrySchedule = append(p.sub.RetrySchedule, durationpb.New(d))
			}
			return nil
		})
	p.flag(fs, "daily-at", "schedule", "send once a day at this local `time` (HH:MM), one POST of everything since the last (Scopevisio's \"täglich\")"+empty("sends at once again"),
		func(v string) error {
			if p.sub.Schedule == nil {
				p.sub.Schedule = &adminv1.DeliverySchedule{}
			}
			p.sub.Schedule.DailyAt = strings.TrimSpace(v)
			return nil
		})
	p.flag(fs, "time-zone", "schedule", "the IANA time `zone` of --daily-at, such as Europe/Berlin (default UTC)",
		func(v string) error {
			if p.sub.Schedule == nil {
				p.sub.Schedule = &adminv1.DeliverySchedule{}
			}
			p.sub.Schedule.TimeZone = strings.TrimSpace(v)
			return nil
		})
	return p
}

// flag registers one payload flag whose uses set takes in turn.
func (p *payloadFlags) flag(fs *flag.FlagSet, name, path, usage string, set func(string) error) {
	fs.Func(name, usage, func(v string) error {
		if err := set(v); err != nil {
			return err
		}
		p.set(name, path)
		return nil
	})
}

func (p *payloadFlags) set(name, path string) {
	if !slices.Contains(p.given, "--"+name) {
		p.given = append(p.given, "--"+name)
	}
	if !slices.Contains(p.mask, path) {
		p.mask = append(p.mask, path)
	}
}

// check finds settings that contradict each other or mode, the
// subscription's mode where it is known here.
func (p *payloadFlags) check(mode adminv1.DeliveryMode) error {
	if len(p.given) > 0 && mode != adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD && mode != adminv1.DeliveryMode_DELIVERY_MODE_UNSPECIFIED {
		return usageErrorf("%s is a setting of payload subscriptions; add --mode payload", p.given[0])
	}
	if p.sub.GetSchedule().GetTimeZone() != "" && !slices.Contains(p.given, "--daily-at") {
		return usageErrorf("--time-zone goes with --daily-at")
	}
	if p.sub.GetOrdering() == adminv1.Ordering_ORDERING_ORDERED && p.sub.GetMaxInFlight() > 1 {
		return usageErrorf("--max-in-flight %d contradicts --ordered, which sends one request at a time", p.sub.GetMaxInFlight())
	}
	return nil
}
