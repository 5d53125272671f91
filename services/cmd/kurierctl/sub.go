package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

const typeUsage = "event `types`: dotted names such as invoice.changed, or Collmex codes 1-9; comma-separated or repeated"

var subCommands = []*command{
	{
		path:     "sub create",
		synopsis: `sub create --org <org-id> --system <name> --type invoice.changed[,5,…] [--type …] (--url <url> | --mode queue --queue <queue-id>) [--name "…"] [--mode payload|ping|queue] [--filter <expr>] [--inactive] [payload flags]`,
		about: "Subscribes an external system to event types and prints the subscription, active\n" +
			"unless --inactive, with its signing secret. The secret is shown only this once.\n" +
			"Collmex event codes 1-9 stand for the types they name. By default (--mode payload)\n" +
			"each event is POSTed as JSON to the URL with a GET part (event, table, conditions,\n" +
			"attributes) added to its query; the flags from --table on shape those requests.\n" +
			"sub preview shows one. With --mode ping, the URL gets a GET a while after a change\n" +
			"and the system reads the change feed (Collmex); a system can have only one ping\n" +
			"subscription per event type. With --mode queue, each event becomes a message in\n" +
			"the org's queue that --queue names (kurierctl queue list). --filter delivers only\n" +
			"the events a CEL expression is true for, in every mode.",
		setup: func(fs *flag.FlagSet) runFunc {
			org := fs.String("org", "", "the `org-id` the subscription belongs to (required)")
			system := fs.String("system", "", "the external system's `name`, 1-20 characters (required)")
			var types typeList
			fs.Var(&types, "type", typeUsage+" (required)")
			url := fs.String("url", "", "the http or https `url` the system is told on (required but for --mode queue)")
			queue := fs.String("queue", "", "the `queue-id` events go into, with --mode queue")
			name := fs.String("name", "", "a `text` saying what the subscription is for")
			mode := modeFlag(adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD)
			fs.Var(&mode, "mode", "the delivery `mode`: "+strings.Join(modeWords.allowed(), ", ")+" (default payload)")
			inactive := fs.Bool("inactive", false, "create it switched off; sub activate switches it on")
			filter := fs.String("filter", "", filterUsage)
			payload := bindPayloadFlags(fs, false)
			return func(ctx context.Context, s *session, _ []string) error {
				queueMode := adminv1.DeliveryMode(mode) == adminv1.DeliveryMode_DELIVERY_MODE_QUEUE
				switch {
				case *org == "":
					return usageErrorf("sub create needs --org <org-id>")
				case *system == "":
					return usageErrorf("sub create needs --system <name>")
				case len(types) == 0:
					return usageErrorf("sub create needs --type <types>")
				case *url == "" && !queueMode:
					return usageErrorf("sub create needs --url <url>")
				case (*queue != "") != queueMode:
					return usageErrorf("--queue <queue-id> goes with --mode queue, and --mode queue needs it")
				}
				if err := payload.check(adminv1.DeliveryMode(mode)); err != nil {
					return err
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				in := payload.sub
				in.OrgId, in.System, in.Name, in.EventTypes = *org, *system, *name, types
				in.Mode, in.Url, in.QueueId, in.Filter = adminv1.DeliveryMode(mode), *url, *queue, *filter
				resp, err := api.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: in, Inactive: *inactive})
				if err != nil {
					return err
				}
				return s.out.createdSub(resp)
			}
		},
	},
	{
		path:     "sub get",
		args:     []string{"subscription-id"},
		synopsis: "sub get <subscription-id>",
		about: "Shows one subscription with its ping state, or with its settings and whether its\n" +
			"deliveries fail for a payload subscription. Table output shows the values of secret\n" +
			"attributes as ***; -o json shows them.",
		setup: func(*flag.FlagSet) runFunc {
			return func(ctx context.Context, s *session, args []string) error {
				api, err := s.api()
				if err != nil {
					return err
				}
				sub, err := api.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: args[0]})
				if err != nil {
					return err
				}
				return s.out.sub(sub)
			}
		},
	},
	{
		path:     "sub list",
		synopsis: "sub list --org <org-id>",
		about:    "Lists an organisation's subscriptions with their ping state.",
		setup: func(fs *flag.FlagSet) runFunc {
			org := fs.String("org", "", "the `org-id` whose subscriptions to list (required)")
			return func(ctx context.Context, s *session, _ []string) error {
				if *org == "" {
					return usageErrorf("sub list needs --org <org-id>")
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				resp, err := api.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: *org})
				if err != nil {
					return err
				}
				if len(resp.GetSubscriptions()) == 0 {
					s.out.note("Org %s has no subscriptions; create one with: kurierctl sub create --org %s --system <name> --type <type> --url <url>", *org, *org)
					if s.out.format == "table" {
						return nil
					}
				}
				return s.out.subs(resp, resp.GetSubscriptions()...)
			}
		},
	},
	{
		path:     "sub update",
		args:     []string{"subscription-id"},
		synopsis: "sub update <subscription-id> [--system <name>] [--name \"…\"] [--type …] [--url <url>] [--queue <queue-id>] [--filter <expr>] [payload flags]",
		about: "Changes the fields given as flags and leaves the others as they are. The types\n" +
			"given replace the subscription's types, and so do the fields, attributes, headers\n" +
			"and retry delays of a payload subscription: give the whole new list. sub activate\n" +
			"and deactivate switch it on and off.",
		setup: func(fs *flag.FlagSet) runFunc {
			var system, name, url, queue, filter optString
			var types typeList
			fs.Var(&system, "system", "the external system's new `name`")
			fs.Var(&name, "name", "the new `text` saying what the subscription is for; \"\" clears it")
			fs.Var(&types, "type", "the new "+typeUsage)
			fs.Var(&url, "url", "the new http or https `url`")
			fs.Var(&queue, "queue", "the new `queue-id` of a queue subscription")
			fs.Var(&filter, "filter", "the new "+filterUsage+"; \"\" clears it")
			payload := bindPayloadFlags(fs, true)
			return func(ctx context.Context, s *session, args []string) error {
				in := payload.sub
				in.SubscriptionId = args[0]
				var mask []string
				if system.set {
					in.System, mask = system.v, append(mask, "system")
				}
				if name.set {
					in.Name, mask = name.v, append(mask, "name")
				}
				if len(types) > 0 {
					in.EventTypes, mask = types, append(mask, "event_types")
				}
				if url.set {
					in.Url, mask = url.v, append(mask, "url")
				}
				if queue.set {
					in.QueueId, mask = queue.v, append(mask, "queue_id")
				}
				if filter.set {
					in.Filter, mask = filter.v, append(mask, "filter")
				}
				mask = append(mask, payload.mask...)
				// The server reads an empty mask as "all fields", which
				// would clear whatever no flag gave.
				if len(mask) == 0 {
					return usageErrorf("sub update needs at least one of --system, --name, --type, --url, --queue, --filter, or a payload flag such as --table")
				}
				// The mode is the server's to know; it refuses payload
				// settings for other subscriptions.
				if err := payload.check(adminv1.DeliveryMode_DELIVERY_MODE_UNSPECIFIED); err != nil {
					return err
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				sub, err := api.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
					Subscription: in, UpdateMask: &fieldmaskpb.FieldMask{Paths: mask},
				})
				if err != nil {
					return err
				}
				return s.out.sub(sub)
			}
		},
	},
	{
		path:     "sub delete",
		args:     []string{"subscription-id"},
		synopsis: "sub delete <subscription-id>",
		about:    "Deletes a subscription and any ping still pending for it. There is no undo.",
		setup: func(*flag.FlagSet) runFunc {
			return func(ctx context.Context, s *session, args []string) error {
				api, err := s.api()
				if err != nil {
					return err
				}
				resp, err := api.DeleteSubscription(ctx, &adminv1.DeleteSubscriptionRequest{SubscriptionId: args[0]})
				if err != nil {
					return err
				}
				if s.out.format == "json" {
					return s.out.json(resp)
				}
				_, err = fmt.Fprintf(s.out.w, "Deleted subscription %s.\n", args[0])
				return err
			}
		},
	},
	setActiveCommand(true),
	setActiveCommand(false),
	subTestCommand,
	{
		path:     "sub rotate-secret",
		args:     []string{"subscription-id"},
		synopsis: "sub rotate-secret <subscription-id>",
		about: "Makes a new signing secret and prints it, once. Until the time printed with it,\n" +
			"requests carry a signature with the previous secret as well, so the receiver can\n" +
			"switch over without missing one. Queue subscriptions sign nothing: refused.",
		setup: func(*flag.FlagSet) runFunc {
			return func(ctx context.Context, s *session, args []string) error {
				api, err := s.api()
				if err != nil {
					return err
				}
				resp, err := api.RotateSecret(ctx, &adminv1.RotateSecretRequest{SubscriptionId: args[0]})
				if err != nil {
					return err
				}
				return s.out.rotated(resp)
			}
		},
	},
	{
		path:     "sub preview",
		args:     []string{"subscription-id"},
		synopsis: "sub preview <subscription-id> [--type <type>] [--event <file>]",
		about: "Shows the request a delivery makes: the method and the exact URL, with the GET part\n" +
			"of a payload subscription (profacto's \"Muster-URL\"), then a sample body, and\n" +
			"whether the sample event would be delivered: of the subscription's types and\n" +
			"passing its filter. --event tries a CloudEvent of your own (JSON, as ingest takes\n" +
			"it) instead of the generated sample.",
		setup: func(fs *flag.FlagSet) runFunc {
			typ := fs.String("type", "", "the event `type` to show (default the subscription's first)")
			file := fs.String("event", "", "a `file` holding a CloudEvent as JSON to preview with, - for standard input")
			return func(ctx context.Context, s *session, args []string) error {
				var sample string
				if *file != "" {
					var err error
					if sample, err = readSample(*file, s.in); err != nil {
						return err
					}
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				resp, err := api.PreviewSubscription(ctx, &adminv1.PreviewSubscriptionRequest{SubscriptionId: args[0], EventType: *typ, SampleEvent: sample})
				if err != nil {
					return err
				}
				return s.out.preview(resp)
			}
		},
	},
}

const filterUsage = "a CEL `expression` an event must be true for to be delivered (or, for ping, to start a ping), over type, subject, source, id, time and data, such as 'data.total > 1000.0 && subject.startsWith(\"INV-\")'"

// maxSample is the largest sample event admin takes.
const maxSample = 256 << 10

// readSample reads a sample event from the file named, or stdin for "-".
func readSample(name string, stdin io.Reader) (string, error) {
	b, _, err := readInput(name, stdin, maxSample, "the largest sample event admin takes")
	return string(b), err
}

func setActiveCommand(active bool) *command {
	word, about := "deactivate", "Switches a subscription off; a ping still pending for it is dropped."
	if active {
		word, about = "activate", "Switches a subscription on. This also sets its unacknowledged pings back to 0, as\n"+
			"in Collmex, so a system that stopped at 100 unread pings is pinged again."
	}
	return &command{
		path:     "sub " + word,
		args:     []string{"subscription-id"},
		synopsis: "sub " + word + " <subscription-id>",
		about:    about,
		setup: func(*flag.FlagSet) runFunc {
			return func(ctx context.Context, s *session, args []string) error {
				api, err := s.api()
				if err != nil {
					return err
				}
				sub, err := api.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: args[0], Active: active})
				if err != nil {
					return err
				}
				return s.out.sub(sub)
			}
		},
	}
}

// modeWords are the ways a subscription's system can be told of changes.
var modeWords = enumWords{kind: "mode", desc: adminv1.DeliveryMode(0).Descriptor(), prefix: "DELIVERY_MODE_"}

func modeName(m adminv1.DeliveryMode) string { return modeWords.word(m.Number()) }

// modeFlag is the --mode flag.
type modeFlag adminv1.DeliveryMode

func (m *modeFlag) String() string {
	if m == nil {
		return ""
	}
	return modeName(adminv1.DeliveryMode(*m))
}

func (m *modeFlag) Set(v string) error {
	n, err := modeWords.parse(strings.TrimSpace(v))
	if err != nil {
		return err
	}
	*m = modeFlag(n)
	return nil
}

// typeList is the --type flag: comma-separated, repeatable, each type
// counted once. Types go to the server as given; it knows the catalog.
type typeList []string

func (l *typeList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *typeList) Set(v string) error {
	n := 0
	for t := range listItems(v) {
		n++
		if !slices.Contains(*l, t) {
			*l = append(*l, t)
		}
	}
	if n == 0 {
		return errors.New("no event type given")
	}
	return nil
}

// optString is a string flag that tells whether it was given, so that
// --name "" can clear a value that leaving --name out keeps.
type optString struct {
	v   string
	set bool
}

func (o *optString) String() string {
	if o == nil {
		return ""
	}
	return o.v
}

func (o *optString) Set(v string) error {
	o.v, o.set = v, true
	return nil
}
