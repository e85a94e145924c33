package main

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/ds01/ds01/registry"
)

// wizardChoice is what the image wizard asked for.
type wizardChoice struct {
	Entry   registry.CatalogEntry
	Presets []string
	Pip     []string
}

// wizard asks, like the DS01 image wizard, for a framework and version
// from the catalog, presets and extra packages, shows a summary and asks
// to go on. Every question has a default (Enter); numbers pick from lists.
func wizard(in *bufio.Reader, out io.Writer, project string, catalog []registry.CatalogEntry, presets registry.Presets) (wizardChoice, error) {
	var ch wizardChoice
	var frameworks []string
	for _, e := range catalog {
		if !slices.Contains(frameworks, e.Framework) {
			frameworks = append(frameworks, e.Framework)
		}
	}
	if len(frameworks) == 0 {
		return ch, fmt.Errorf("the catalog is empty")
	}
	fmt.Fprintf(out, "Image for project %s: ds01 asks what it should hold (Enter takes the default).\n", project)
	fi, err := pick(in, out, "Framework", frameworks, 0)
	if err != nil {
		return ch, err
	}
	var versions []registry.CatalogEntry
	var labels []string
	for _, e := range catalog {
		if e.Framework == frameworks[fi] {
			versions = append(versions, e)
			labels = append(labels, fmt.Sprintf("%s (%s) %s", e.Version, e.Arch, e.Image))
		}
	}
	vi, err := pick(in, out, frameworks[fi]+" version", labels, 0)
	if err != nil {
		return ch, err
	}
	ch.Entry = versions[vi]

	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	slices.Sort(names)
	fmt.Fprintln(out, "Package presets (numbers separated by spaces or commas; Enter for none):")
	for i, n := range names {
		fmt.Fprintf(out, "  %d) %-13s %s\n", i+1, n, strings.Join(presets[n], " "))
	}
	line, err := ask(in, out, "Presets", "")
	if err != nil {
		return ch, err
	}
	for _, f := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > len(names) {
			return ch, fmt.Errorf("preset %q: give numbers from 1 to %d", f, len(names))
		}
		if !slices.Contains(ch.Presets, names[n-1]) {
			ch.Presets = append(ch.Presets, names[n-1])
		}
	}
	line, err = ask(in, out, "Extra pip packages (space separated)", "")
	if err != nil {
		return ch, err
	}
	ch.Pip = strings.Fields(line)

	fmt.Fprintf(out, "\nSummary\n  image     ds01-{UID}/%s:latest\n  base      %s %s (%s): %s\n", project, ch.Entry.Framework, ch.Entry.Version, ch.Entry.Arch, ch.Entry.Image)
	if len(ch.Presets) > 0 {
		fmt.Fprintf(out, "  presets   %s\n", strings.Join(ch.Presets, ", "))
	}
	if len(ch.Pip) > 0 {
		fmt.Fprintf(out, "  pip       %s\n", strings.Join(ch.Pip, " "))
	}
	yes, err := ask(in, out, "Build it? [Y/n]", "")
	if err != nil {
		return ch, err
	}
	if a := strings.ToLower(strings.TrimSpace(yes)); a != "" && a != "y" && a != "yes" {
		return ch, fmt.Errorf("nothing built")
	}
	return ch, nil
}

// pick shows a numbered list and returns the index chosen.
func pick(in *bufio.Reader, out io.Writer, what string, items []string, def int) (int, error) {
	fmt.Fprintf(out, "%s:\n", what)
	for i, it := range items {
		mark := " "
		if i == def {
			mark = "*"
		}
		fmt.Fprintf(out, " %s%d) %s\n", mark, i+1, it)
	}
	for {
		line, err := ask(in, out, what, strconv.Itoa(def+1))
		if err != nil {
			return 0, err
		}
		n, err := strconv.Atoi(strings.TrimSpace(line))
		if err == nil && n >= 1 && n <= len(items) {
			return n - 1, nil
		}
		fmt.Fprintf(out, "  give a number from 1 to %d\n", len(items))
	}
}

// ask reads one answer; Enter gives def.
func ask(in *bufio.Reader, out io.Writer, prompt, def string) (string, error) {
	if def != "" {
		fmt.Fprintf(out, "%s [%s]: ", prompt, def)
	} else {
		fmt.Fprintf(out, "%s: ", prompt)
	}
	line, err := in.ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("no answer (end of input): nothing built")
	}
	if line = strings.TrimSpace(line); line == "" {
		return def, nil
	}
	return line, nil
}
