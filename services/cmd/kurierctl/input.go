package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

// readInput reads the file named on the command line, or stdin for "-",
// refusing one larger than limit bytes with "<name> is larger than N KiB,
// <tooLarge>". It also answers how to name the input in messages.
func readInput(name string, stdin io.Reader, limit int, tooLarge string) (b []byte, shown string, err error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, name, err
		}
		defer f.Close()
		r = f
	} else {
		name = "standard input"
	}
	b, err = io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, name, fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > limit {
		return nil, name, fmt.Errorf("%s is larger than %d KiB, %s", name, limit>>10, tooLarge)
	}
	return b, name, nil
}

// fileFlags are the --org and -f flags of a command that sends an org's
// file, both required.
type fileFlags struct {
	org, file string
}

// bind registers the flags with their usage texts.
func (f *fileFlags) bind(fs *flag.FlagSet, orgUsage, fileUsage string) {
	fs.StringVar(&f.org, "org", "", orgUsage)
	fs.StringVar(&f.file, "f", "", fileUsage)
}

// check says which flag the command at path misses, if any.
func (f *fileFlags) check(path string) error {
	switch {
	case f.org == "":
		return usageErrorf("%s needs --org <org-id>", path)
	case f.file == "":
		return usageErrorf("%s needs -f <file>, or -f - for standard input", path)
	}
	return nil
}
