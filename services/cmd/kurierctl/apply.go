package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
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
		org := fs.String("org", "", "the `org-id` the notifications belong to (required)")
		file := fs.String("f", "", "the `file` to read, - for standard input (required)")
		return func(ctx context.Context, s *session, _ []string) error {
			switch {
			case *org == "":
				return usageErrorf("apply needs --org <org-id>")
			case *file == "":
				return usageErrorf("apply needs -f <file>, or -f - for standard input")
			}
			records, err := readRecords(*file, s.in)
			if err != nil {
				return err
			}
			api, err := s.api()
			if err != nil {
				return err
			}
			resp, err := api.ApplyApiNotification(ctx, &adminv1.ApplyApiNotificationRequest{OrgId: *org, Records: records})
			if err != nil {
				return err
			}
			return s.out.applied(resp)
		}
	},
}

// readRecords reads the file named on the command line, or stdin for "-".
func readRecords(name string, stdin io.Reader) (string, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return "", err
		}
		defer f.Close()
		r = f
	} else {
		name = "standard input"
	}
	b, err := io.ReadAll(io.LimitReader(r, maxRecordsFile+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > maxRecordsFile {
		return "", fmt.Errorf("%s is larger than %d KiB, the most one call takes; split it", name, maxRecordsFile>>10)
	}
	if utf8.Valid(b) {
		return string(b), nil
	}
	var sb strings.Builder
	for _, c := range b {
		sb.WriteRune(rune(c)) // ISO-8859-1 is the first 256 code points
	}
	return sb.String(), nil
}
