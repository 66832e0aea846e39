package main

import (
	"flag"
	"io"

	"github.com/goreplica/goreplica/config"
)

// newFlagSet returns an empty flag set for a verb.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("goreplica "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// newFlags returns a flag set for a verb with the -c option most verbs share.
func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := newFlagSet(name, stderr)
	c := fs.String("c", "", "configuration file (default $GOREPLICA_CONFIG, then "+config.DefaultPath()+")")
	return fs, c
}

func defaultConfigHint() string { return config.DefaultPath() }

type flagSet = flag.FlagSet
