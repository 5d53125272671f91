package main

import (
	"context"
	"flag"
	"io"
	"strings"
	"unicode/utf8"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

// maxRecordsFile keeps a file within what one gRPC call carries (4 MiB by
// default), so a too large file is turned away here with a clear message.
const maxRecordsFile = 4<<20 - 1024

var applyCommand = &command{
	path:     "apply",
	synopsis: "apply --org <org-id> -f <file>|-",
	about: "Applies a file of Collmex API_NOTIFICATION records, the format Collmex imports and\n" +
		"exports them in, one per line: API_NOTIFICATION;System;Ereignis;URL;Inaktiv, where\n" +
		"Ereignis is an event code 1-9 and Inaktiv is 0 (active), 1 (inactive) or 2 (delete).\n" +
		"A line for a system and event that already have a ping subscription updates it.\n" +
		"Either every line is applied or, when one is wrong, none. A file that is not UTF-8\n" +
		"is read as ISO-8859-1, which Collmex uses.",
	setup: func(fs *flag.FlagSet) runFunc {
		var f fileFlags
		f.bind(fs, "the `org-id` the notifications belong to (required)", "the `file` to read, - for standard input (required)")
		return func(ctx context.Context, s *session, _ []string) error {
			if err := f.check("apply"); err != nil {
				return err
			}
			records, err := readRecords(f.file, s.in)
			if err != nil {
				return err
			}
			api, err := s.api()
			if err != nil {
				return err
			}
			resp, err := api.ApplyApiNotification(ctx, &adminv1.ApplyApiNotificationRequest{OrgId: f.org, Records: records})
			if err != nil {
				return err
			}
			return s.out.applied(resp)
		}
	},
}

// readRecords reads the file named on the command line, or stdin for "-".
func readRecords(name string, stdin io.Reader) (string, error) {
	b, _, err := readInput(name, stdin, maxRecordsFile, "the most one call takes; split it")
	if err != nil || utf8.Valid(b) {
		return string(b), err
	}
	var sb strings.Builder
	for _, c := range b {
		sb.WriteRune(rune(c)) // ISO-8859-1 is the first 256 code points
	}
	return sb.String(), nil
}
