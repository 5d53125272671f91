package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"kurier.dev/services/internal/dlog"
)

// shells are the shells completion writes scripts for, each with its
// writer.
var shells = map[string]func(completion, io.Writer) error{
	"bash": func(c completion, w io.Writer) error {
		return c.sh(w, "# bash completion for kurierctl, printed by \"kurierctl completion bash\".\n\n", bashMain)
	},
	"zsh": func(c completion, w io.Writer) error {
		return c.sh(w, "#compdef kurierctl\n# zsh completion for kurierctl, printed by \"kurierctl completion zsh\".\n\n", zshMain)
	},
	"fish": completion.fish,
}

// shellNames lists the shells in a fixed order, for help and messages.
var shellNames = []string{"bash", "zsh", "fish"}

// flagWords are the few words some flags take, by command path and flag
// name ("" holds the global flags). A flag whose value its usage calls
// `file` takes a file name.
var flagWords = map[string]map[string][]string{
	"":                  {"o": {"table", "json"}, "output": {"table", "json"}},
	"key create":        {"scope": scopeWords.allowed()},
	"sub create":        {"mode": modeWords.allowed(), "format": formatWords.allowed()},
	"sub update":        {"format": formatWords.allowed()},
	"person create":     {"mode": fieldModeWords.allowed()},
	"deliveries export": {"format": {"jsonl"}},
	"deliveries list":   {"outcome": dlog.Outcomes},
	"deliveries tail":   {"outcome": dlog.Outcomes},
	"sub stats":         {"window": windowWords.allowed()},
	"org stats":         {"window": windowWords.allowed()},
}

// argWords are the words the argument of a command may be, where they are
// a few.
var argWords = map[string][]string{"completion": shellNames}

// completionCommand prints a completion script. all answers the commands
// to complete, this one among them: the table of commands is not made yet
// when this command is.
func completionCommand(all func() []*command) *command {
	return &command{
		path:     "completion",
		args:     []string{"shell"},
		synopsis: "completion " + strings.Join(shellNames, "|"),
		about: "Prints a script that completes kurierctl's commands, flags and the words some flags\n" +
			"take in the shell named. Load it in the running shell:\n" +
			"  bash: source <(kurierctl completion bash)\n" +
			"  zsh:  source <(kurierctl completion zsh)   (after compinit)\n" +
			"  fish: kurierctl completion fish | source\n" +
			"or for every new shell, save it as /etc/bash_completion.d/kurierctl, as _kurierctl in\n" +
			"a directory of zsh's $fpath, or as ~/.config/fish/completions/kurierctl.fish.",
		setup: func(*flag.FlagSet) runFunc {
			return func(_ context.Context, s *session, args []string) error {
				write, ok := shells[args[0]]
				if !ok {
					return usageErrorf("unknown shell %q; allowed: %s", args[0], strings.Join(shellNames, ", "))
				}
				return write(newCompletion(all()), s.out.w)
			}
		},
	}
}

// completion is what the scripts complete, taken from the command table so
// that a new command or flag completes without a change here.
type completion struct {
	// words are the command words that may follow a path: "" for the
	// first word, "sub" for the words after it.
	words map[string][]choice
	// paths lists the paths with words after them ("" and the groups
	// such as "sub"), leaves the paths of commands, each in a fixed order.
	paths, leaves []string
	// own are each command's own flags, globals the flags every command
	// takes unless it has its own of the same name.
	own     map[string][]compFlag
	globals []compFlag
}

// choice is a word with what it does.
type choice struct{ word, about string }

// compFlag is a flag as completion sees it.
type compFlag struct {
	name, about string
	isBool      bool
	words       []string // the words it takes, if a few
	file        bool     // it takes a file name
}

func newCompletion(cs []*command) completion {
	c := completion{words: map[string][]choice{}, own: map[string][]compFlag{}}
	var g globals
	gfs := newFlagSet("kurierctl")
	g.bind(gfs)
	c.globals = compFlags("", gfs, globalUsage())
	c.add("", choice{"help", "Prints the commands and the global flags"})
	for _, cmd := range cs {
		words := strings.Fields(cmd.path)
		for i, w := range words {
			about := ""
			if i == len(words)-1 {
				about = firstSentence(cmd.about)
			}
			c.add(strings.Join(words[:i], " "), choice{w, about})
		}
		own := newFlagSet(cmd.path)
		cmd.setup(own)
		c.leaves = append(c.leaves, cmd.path)
		c.own[cmd.path] = compFlags(cmd.path, own, flag.UnquoteUsage)
	}
	// A group says which commands it holds.
	for _, p := range c.paths {
		for i, w := range c.words[p] {
			if w.about != "" {
				continue
			}
			var subs []string
			for _, s := range c.words[strings.TrimSpace(p+" "+w.word)] {
				subs = append(subs, s.word)
			}
			c.words[p][i].about = strings.Join(subs, ", ")
		}
	}
	return c
}

// add notes that w may follow path, once.
func (c *completion) add(path string, w choice) {
	if !slices.Contains(c.paths, path) {
		c.paths = append(c.paths, path)
	}
	if !slices.ContainsFunc(c.words[path], func(x choice) bool { return x.word == w.word }) {
		c.words[path] = append(c.words[path], w)
	}
}

// flags are the flags the command at path takes: its own, then the global
// ones it has none of the same name as.
func (c completion) flags(path string) []compFlag {
	flags := slices.Clone(c.own[path])
	for _, g := range c.globals {
		if !c.shadows(path, g.name) {
			flags = append(flags, g)
		}
	}
	return flags
}

// shadows tells whether the command at path has a flag of its own named
// name.
func (c completion) shadows(path, name string) bool {
	return slices.ContainsFunc(c.own[path], func(f compFlag) bool { return f.name == name })
}

// compFlags describes the flags of fs, those of the command at path;
// usage answers a flag's value name and usage, as flag.UnquoteUsage does.
func compFlags(path string, fs *flag.FlagSet, usage func(*flag.Flag) (string, string)) []compFlag {
	var out []compFlag
	fs.VisitAll(func(f *flag.Flag) {
		value, about := usage(f)
		b, ok := f.Value.(interface{ IsBoolFlag() bool })
		out = append(out, compFlag{name: f.Name, about: strings.Join(strings.Fields(about), " "), isBool: ok && b.IsBoolFlag(),
			words: flagWords[path][f.Name], file: value == "file"})
	})
	return out
}

// globalUsage answers the value names and usages of the global flags
// from globalHelp, where they are written, rather than from the flags,
// which carry none.
func globalUsage() func(*flag.Flag) (string, string) {
	type usage struct{ value, about string }
	byName := map[string]*usage{}
	var last *usage
	for line := range strings.Lines(globalHelp) {
		line = strings.TrimRight(line, "\n")
		m := helpLine.FindStringSubmatch(line)
		switch {
		case m != nil:
			last = &usage{about: m[2]}
			for _, w := range strings.Fields(m[1]) {
				if name, ok := strings.CutPrefix(strings.TrimSuffix(w, ","), "-"); ok {
					byName[strings.TrimPrefix(name, "-")] = last
				} else {
					last.value = w
				}
			}
		case last != nil && strings.HasPrefix(line, "    "):
			last.about += " " + strings.TrimSpace(line)
		}
	}
	return func(f *flag.Flag) (string, string) {
		if u := byName[f.Name]; u != nil {
			return u.value, u.about
		}
		return "", ""
	}
}

// helpLine is a line of globalHelp that begins a flag: its names and
// value name, then its usage.
var helpLine = regexp.MustCompile(`^  (-\S.*?) {2,}(.*)$`)

// firstSentence is the first part of a command's about, up to the end of
// its first sentence or clause, on one line.
func firstSentence(about string) string {
	about = strings.Join(strings.Fields(about), " ")
	if loc := clauseEnd.FindStringIndex(about); loc != nil {
		about = about[:loc[0]]
	}
	return strings.TrimSuffix(about, ".")
}

var clauseEnd = regexp.MustCompile(`[.:;] `)

// dashes is how a flag is written: -f for a one-letter name, --name else.
func dashes(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// shq quotes s for bash and zsh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// fishq quotes s for fish.
func fishq(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}

// quote quotes each of ss with q.
func quote(q func(string) string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = q(s)
	}
	return out
}

// printf is a shell command printing ss one a line.
func printf(ss []string) string {
	return "printf '%s\\n' " + strings.Join(quote(shq, ss), " ")
}

// flagCase is a case of a shell function that looks a flag up by
// "path|name": key is that, or "|name" of a global flag for any path.
type flagCase struct {
	global      bool
	key, answer string
}

// flagCases are the cases of such a function: first those of commands'
// own flags, then those of the global ones. A command's own flag of a
// global's name gets a case whatever it is, so that the global's does not
// answer for it; answer is each case's code, "" for dflt.
func (c completion) flagCases(answer func(compFlag) string, dflt string) []flagCase {
	var out []flagCase
	for _, leaf := range c.leaves {
		for _, f := range c.own[leaf] {
			if a := answer(f); a != "" || c.shadowsGlobal(f.name) {
				out = append(out, flagCase{key: leaf + "|" + f.name, answer: or(a, dflt)})
			}
		}
	}
	for _, g := range c.globals {
		if a := answer(g); a != "" {
			out = append(out, flagCase{global: true, key: "|" + g.name, answer: a})
		}
	}
	return out
}

// shCases writes cases as those of a bash or zsh case statement.
func shCases(b *strings.Builder, cases []flagCase) {
	for _, fc := range cases {
		pattern := shq(fc.key)
		if fc.global {
			pattern = "*" + pattern
		}
		fmt.Fprintf(b, "\t%s) %s ;;\n", pattern, fc.answer)
	}
}

// isBool answers a flag that takes no value.
func isBool(f compFlag) string {
	if f.isBool {
		return "return 0"
	}
	return ""
}

// shadowsGlobal tells whether a global flag is called name.
func (c completion) shadowsGlobal(name string) bool {
	return slices.ContainsFunc(c.globals, func(g compFlag) bool { return g.name == name })
}

// shellTables writes the functions that bash and zsh share: what follows
// a path, which paths are commands, which flags take no value and the
// values flags take. Each prints one item a line, words and flags with
// what they do after a colon.
func (c completion) shellTables(b *strings.Builder) {
	b.WriteString("# _kurierctl_words <path>: the words that may follow path.\n_kurierctl_words() {\n\tcase $1 in\n")
	for _, p := range c.paths {
		var lines []string
		for _, w := range c.words[p] {
			lines = append(lines, w.word+":"+w.about)
		}
		fmt.Fprintf(b, "\t%s) %s ;;\n", shq(p), printf(lines))
	}
	for _, leaf := range c.leaves {
		if words := argWords[leaf]; words != nil {
			fmt.Fprintf(b, "\t%s) %s ;;\n", shq(leaf), printf(words))
		}
	}
	b.WriteString("\tesac\n}\n\n")

	b.WriteString("# _kurierctl_flags <path>: the flags a command line at path takes.\n_kurierctl_flags() {\n\tcase $1 in\n")
	flagLines := func(flags []compFlag) string {
		var lines []string
		for _, f := range flags {
			lines = append(lines, dashes(f.name)+":"+f.about)
		}
		return printf(lines)
	}
	for _, leaf := range c.leaves {
		fmt.Fprintf(b, "\t%s) %s ;;\n", shq(leaf), flagLines(c.flags(leaf)))
	}
	fmt.Fprintf(b, "\t*) %s ;;\n\tesac\n}\n\n", flagLines(c.globals))

	b.WriteString("# _kurierctl_leaf <path>: whether path is a command.\n_kurierctl_leaf() {\n\tcase $1 in\n\t")
	b.WriteString(strings.Join(quote(shq, c.leaves), "|"))
	b.WriteString(") return 0 ;;\n\tesac\n\treturn 1\n}\n\n")

	b.WriteString("# _kurierctl_bool <path> <flag>: whether the flag takes no value.\n_kurierctl_bool() {\n\tlocal f=${2#-}\n\tcase \"$1|${f#-}\" in\n")
	shCases(b, c.flagCases(isBool, "return 1"))
	b.WriteString("\tesac\n\treturn 1\n}\n\n")

	b.WriteString("# _kurierctl_values <path> <flag>: the words the flag takes, one a line;\n" +
		"# status 2 for a file name, 1 for anything.\n_kurierctl_values() {\n\tlocal f=${2#-}\n\tcase \"$1|${f#-}\" in\n")
	shCases(b, c.flagCases(func(f compFlag) string {
		switch {
		case f.file:
			return "return 2"
		case f.words != nil:
			return printf(f.words)
		}
		return ""
	}, "return 1"))
	b.WriteString("\t*) return 1 ;;\n\tesac\n}\n\n")
	b.WriteString(shellScan)
}

// shellScan reads a command line, the words before the one being
// completed, for bash and zsh alike: the command path so far, the flag
// waiting for its value and how many arguments were given. Bash splits
// --flag=value at the "=".
const shellScan = `# _kurierctl_scan <word>…: sets cmd to the command path the words reach, flag
# and skip when the last flag waits for its value, n to the arguments given.
_kurierctl_scan() {
	cmd= flag= skip= n=0
	local w prev=
	while (($#)); do
		w=$1
		shift
		if [[ $w == '=' ]]; then
			flag=$prev skip=1
		elif [[ -n $skip ]]; then
			skip=
		else
			case $w in
			-*=*) ;;
			-*) [[ $1 == '=' ]] || _kurierctl_bool "$cmd" "$w" || flag=$w skip=1 ;;
			*) if _kurierctl_leaf "$cmd"; then n=$((n + 1)); else cmd=${cmd:+$cmd }$w; fi ;;
			esac
		fi
		prev=$w
	done
}

`

// bashMain completes the word under the cursor; with the cursor right
// after --flag=, that word is the "=".
const bashMain = `_kurierctl() {
	local cur=${COMP_WORDS[COMP_CWORD]} cmd flag skip n out IFS=$'\n'
	local -a list
	_kurierctl_scan "${COMP_WORDS[@]:1:COMP_CWORD-1}"
	if [[ $cur == '=' ]]; then
		flag=${COMP_WORDS[COMP_CWORD-1]} skip=1 cur=
	fi
	if [[ -n $skip ]]; then
		out=$(_kurierctl_values "$cmd" "$flag")
		case $? in
		0) COMPREPLY=($(compgen -W "$out" -- "$cur")) ;;
		2)
			compopt -o filenames 2>/dev/null
			COMPREPLY=($(compgen -f -- "$cur"))
			;;
		esac
		return 0
	fi
	if [[ $cur == -* ]]; then
		list=($(_kurierctl_flags "$cmd"))
	elif ((n == 0)); then
		list=($(_kurierctl_words "$cmd"))
	fi
	COMPREPLY=($(compgen -W "${list[*]%%:*}" -- "$cur"))
}

complete -F _kurierctl kurierctl
`

// zshMain is bashMain for zsh, which keeps --flag=value one word and shows
// what each word does.
const zshMain = `_kurierctl() {
	local cur=${words[CURRENT]} cmd flag skip n out
	local -a list
	_kurierctl_scan "${(@)words[2,CURRENT-1]}"
	if [[ -z $skip && $cur == -*=* ]]; then
		flag=${cur%%=*} skip=1
		compset -P '*='
	fi
	if [[ -n $skip ]]; then
		out=$(_kurierctl_values "$cmd" "$flag")
		case $? in
		0)
			list=(${(f)out})
			compadd -a list
			;;
		2) _files ;;
		esac
		return
	fi
	if [[ $cur == -* ]]; then
		list=(${(f)"$(_kurierctl_flags "$cmd")"})
		_describe -t flags flag list
	elif ((n == 0)); then
		list=(${(f)"$(_kurierctl_words "$cmd")"})
		_describe -t commands command list
	fi
}

if [[ $funcstack[1] == _kurierctl ]]; then
	_kurierctl "$@"
else
	compdef _kurierctl kurierctl
fi
`

// sh writes a script for bash or zsh: its head, the functions they share,
// then its main.
func (c completion) sh(w io.Writer, head, main string) error {
	var b strings.Builder
	b.WriteString(head)
	c.shellTables(&b)
	b.WriteString(main)
	_, err := io.WriteString(w, b.String())
	return err
}

// fishHead finds where the command line is: __kurierctl_state prints the
// number of arguments given and the command path so far.
const fishHead = `function __kurierctl_state
    set -l cmd ''
    set -l skip 0
    set -l n 0
    for w in (commandline -opc)[2..-1]
        if test $skip = 1
            set skip 0
            continue
        end
        switch $w
            case '-*=*'
            case '-*'
                __kurierctl_bool "$cmd" $w; or set skip 1
            case '*'
                if __kurierctl_leaf "$cmd"
                    set n (math $n + 1)
                else
                    set cmd (string trim -- "$cmd $w")
                end
        end
    end
    echo "$n $cmd"
end

# __kurierctl_in <path>: the command line is at path.
function __kurierctl_in
    string match -qr -- '^\d+ '(string escape --style=regex -- $argv[1])'$' (__kurierctl_state)
end

# __kurierctl_at <path>: the command line is at path, with no argument yet.
function __kurierctl_at
    test (__kurierctl_state) = "0 $argv[1]"
end

`

func (c completion) fish(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# fish completion for kurierctl, printed by \"kurierctl completion fish\".\n\n")
	b.WriteString("function __kurierctl_leaf\n    switch $argv[1]\n        case " + strings.Join(quote(fishq, c.leaves), " ") +
		"\n            return 0\n    end\n    return 1\nend\n\n")
	b.WriteString("function __kurierctl_bool\n    set -l f (string replace -r -- '^--?' '' $argv[2])\n    switch \"$argv[1]|$f\"\n")
	for _, fc := range c.flagCases(isBool, "return 1") {
		pattern := fishq(fc.key)
		if fc.global {
			pattern = "'*'" + pattern
		}
		fmt.Fprintf(&b, "        case %s\n            %s\n", pattern, fc.answer)
	}
	b.WriteString("    end\n    return 1\nend\n\n")
	b.WriteString(fishHead)
	b.WriteString("complete -c kurierctl -f\n")
	for _, p := range c.paths {
		for _, w := range c.words[p] {
			fmt.Fprintf(&b, "complete -c kurierctl -n %s -a %s -d %s\n", fishq("__kurierctl_at "+fishq(p)), w.word, fishq(w.about))
		}
	}
	for _, leaf := range c.leaves {
		if words := argWords[leaf]; words != nil {
			fmt.Fprintf(&b, "complete -c kurierctl -n %s -a %s\n", fishq("__kurierctl_at "+fishq(leaf)), fishq(strings.Join(words, " ")))
		}
	}
	// The global flags go with every path but those of the commands
	// that have their own of the same name.
	for _, g := range c.globals {
		var not []string
		for _, leaf := range c.leaves {
			if c.shadows(leaf, g.name) {
				not = append(not, "not __kurierctl_in "+fishq(leaf))
			}
		}
		cond := ""
		if not != nil {
			cond = "-n " + fishq(strings.Join(not, "; and ")) + " "
		}
		fmt.Fprintf(&b, "complete -c kurierctl %s%s\n", cond, fishOption(g))
	}
	for _, leaf := range c.leaves {
		for _, f := range c.own[leaf] {
			fmt.Fprintf(&b, "complete -c kurierctl -n %s %s\n", fishq("__kurierctl_in "+fishq(leaf)), fishOption(f))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fishOption is the part of fish's complete command that describes f.
func fishOption(f compFlag) string {
	opt := "-l " + f.name
	if len(f.name) == 1 {
		opt = "-s " + f.name
	}
	switch {
	case f.file:
		opt += " -r -F"
	case f.words != nil:
		opt += " -x -a " + fishq(strings.Join(f.words, " "))
	case !f.isBool:
		opt += " -x"
	}
	if f.about != "" {
		opt += " -d " + fishq(f.about)
	}
	return opt
}
