// Package config loads meshnode's settings through viper: defaults, then a
// YAML file, then MESHNODE_* environment variables, then flags (each later
// source wins), into a typed struct that is then validated.
package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// EnvPrefix prefixes every environment variable: MESHNODE_STATE_DIR sets state_dir.
const EnvPrefix = "MESHNODE"

// Keys lists the config keys of a settings struct (its mapstructure tags),
// the single source for flags, environment variables and the README's
// reference.
func Keys(settings any) []string {
	t := reflect.TypeOf(settings)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	keys := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		if k := t.Field(i).Tag.Get("mapstructure"); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}

// FlagName is the command-line flag for a key: state_dir → --state-dir.
func FlagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// EnvName is the environment variable for a key: state_dir → MESHNODE_STATE_DIR.
func EnvName(key string) string { return EnvPrefix + "_" + strings.ToUpper(key) }

// Load fills out, a pointer to a settings struct already holding its
// defaults, from the file, the environment and the flags that the user set.
// file is the --config value; when it is empty, defaultFile is read if it
// exists. Unknown keys in the file are errors that name them.
func Load(out any, file, defaultFile string, flags *pflag.FlagSet) (used string, err error) {
	v := viper.New()
	v.SetConfigType("yaml")
	for _, key := range Keys(out) {
		v.SetDefault(key, defaultOf(out, key))
		if err := v.BindEnv(key, EnvName(key)); err != nil {
			return "", fmt.Errorf("bind %s: %w", EnvName(key), err)
		}
		// Bind flags one by one: BindPFlags would also bind --help and
		// make UnmarshalExact reject it.
		if flags != nil {
			if f := flags.Lookup(FlagName(key)); f != nil {
				if err := v.BindPFlag(key, f); err != nil {
					return "", fmt.Errorf("bind --%s: %w", f.Name, err)
				}
			}
		}
	}
	switch {
	case file != "":
		used = file
	case defaultFile != "":
		if _, err := os.Stat(defaultFile); err == nil {
			used = defaultFile
		}
	}
	if used != "" {
		f, err := os.Open(used)
		if err != nil {
			return used, fmt.Errorf("config file %s: %w (pass --config with an existing YAML file)", used, err)
		}
		err = v.ReadConfig(f)
		f.Close()
		if err != nil {
			return used, fmt.Errorf("config file %s is not valid YAML: %w", used, err)
		}
	}
	hook := viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.TextUnmarshallerHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	))
	if err := v.UnmarshalExact(out, hook); err != nil {
		return used, explain(err, used, Keys(out), v)
	}
	return used, nil
}

// explain rewrites mapstructure's errors so they say where the bad key or
// value came from and what is allowed.
func explain(err error, file string, keys []string, v *viper.Viper) error {
	where := "settings"
	if file != "" {
		where = "config file " + file
	}
	msg := err.Error()
	if m := invalidKeys.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s: unknown key %s (a typo?); allowed keys: %s", where, m[1], strings.Join(keys, ", "))
	}
	if m := badValue.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s: %s: %q is not a valid %s", where, m[1], fmt.Sprint(v.Get(m[1])), m[2])
	}
	return fmt.Errorf("%s: %s", where, strings.ReplaceAll(strings.TrimPrefix(msg, "decoding failed due to the following error(s):\n\n"), "\n", "; "))
}

// invalidKeys finds the keys in mapstructure's UnmarshalExact error.
var invalidKeys = regexp.MustCompile(`has invalid keys: ([^\n]+)`)

// badValue finds the key and wanted type in a decoding error.
var badValue = regexp.MustCompile(`'([a-z_0-9]+)' cannot parse value as '([a-zA-Z.0-9]+)'`)

// defaultOf returns the current value of the field tagged key.
func defaultOf(settings any, key string) any {
	v := reflect.ValueOf(settings)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	t := v.Type()
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("mapstructure") == key {
			f := v.Field(i)
			if s, ok := f.Interface().(fmt.Stringer); ok && f.Kind() == reflect.Struct {
				// netip values: viper keeps defaults as given, the hook parses text.
				return s.String()
			}
			return f.Interface()
		}
	}
	return nil
}

// oneOf checks that val is one of allowed, with an error naming both.
func oneOf(key, val string, allowed ...string) error {
	if slices.Contains(allowed, val) {
		return nil
	}
	return fmt.Errorf("%s: %q is not allowed; use one of %s", key, val, strings.Join(allowed, ", "))
}

// errIf returns an error naming key when bad is true.
func errIf(bad bool, key string, format string, args ...any) error {
	if !bad {
		return nil
	}
	return errors.New(key + ": " + fmt.Sprintf(format, args...))
}
