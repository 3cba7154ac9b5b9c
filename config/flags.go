package config

import (
	"fmt"
	"reflect"
	"time"

	"github.com/spf13/pflag"
)

// AddFlags declares one flag per key of settings, named by FlagName, with the
// struct's current values as defaults and its desc tags as help. Flags are
// bound to keys by Load; the struct is never written through them.
func AddFlags(fs *pflag.FlagSet, settings any) {
	v := reflect.ValueOf(settings).Elem()
	t := v.Type()
	for i := range t.NumField() {
		key := t.Field(i).Tag.Get("mapstructure")
		if key == "" {
			continue
		}
		name, usage := FlagName(key), t.Field(i).Tag.Get("desc")
		switch val := v.Field(i).Interface().(type) {
		case string:
			fs.String(name, val, usage)
		case int:
			fs.Int(name, val, usage)
		case bool:
			fs.Bool(name, val, usage)
		case time.Duration:
			fs.Duration(name, val, usage)
		case []string:
			fs.StringSlice(name, val, usage)
		case fmt.Stringer:
			fs.String(name, val.String(), usage)
		default:
			panic(fmt.Sprintf("config: no flag type for key %s (%T)", key, val))
		}
	}
}

// Describe returns key → (default, description) for documentation and
// `meshnode config check`.
func Describe(settings any) []KeyDoc {
	v := reflect.ValueOf(settings).Elem()
	t := v.Type()
	var docs []KeyDoc
	for i := range t.NumField() {
		key := t.Field(i).Tag.Get("mapstructure")
		if key == "" {
			continue
		}
		docs = append(docs, KeyDoc{
			Key:   key,
			Value: fmt.Sprint(v.Field(i).Interface()),
			Desc:  t.Field(i).Tag.Get("desc"),
		})
	}
	return docs
}

// KeyDoc documents one key.
type KeyDoc struct {
	Key   string
	Value string // the default, or the effective value
	Desc  string
}
