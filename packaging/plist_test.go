package packaging

import (
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// decodePlist decodes an XML property list (Apple's PropertyList-1.0 DTD)
// into Go values: dict → map[string]any, array → []any, string, bool, int.
// launchd refuses a malformed plist without saying much, so the test decodes
// it strictly: any other element is an error.
func decodePlist(r io.Reader) (any, error) {
	dec := xml.NewDecoder(r)
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("no <plist> element: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "plist" {
				return nil, fmt.Errorf("root element <%s>, want <plist>", se.Name.Local)
			}
			v, _, err := plistValue(dec)
			return v, err
		}
	}
}

// plistValue reads the next value; end reports the closing tag of the
// enclosing array or dict instead.
func plistValue(dec *xml.Decoder) (v any, end bool, err error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, false, fmt.Errorf("read plist: %w", err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil, true, nil
		case xml.StartElement:
			v, err := plistElement(dec, t)
			return v, false, err
		}
	}
}

func plistElement(dec *xml.Decoder, se xml.StartElement) (any, error) {
	switch se.Name.Local {
	case "true", "false":
		if err := dec.Skip(); err != nil {
			return nil, fmt.Errorf("read <%s/>: %w", se.Name.Local, err)
		}
		return se.Name.Local == "true", nil
	case "string", "key":
		var s string
		if err := dec.DecodeElement(&s, &se); err != nil {
			return nil, fmt.Errorf("read <%s>: %w", se.Name.Local, err)
		}
		return s, nil
	case "integer":
		var s string
		if err := dec.DecodeElement(&s, &se); err != nil {
			return nil, fmt.Errorf("read <integer>: %w", err)
		}
		return strconv.Atoi(s)
	case "array":
		arr := []any{}
		for {
			v, end, err := plistValue(dec)
			if err != nil || end {
				return arr, err
			}
			arr = append(arr, v)
		}
	case "dict":
		dict := map[string]any{}
		for {
			k, end, err := plistValue(dec)
			if err != nil || end {
				return dict, err
			}
			key, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("dict key %v is not a <key>", k)
			}
			v, end, err := plistValue(dec)
			if err != nil {
				return nil, err
			}
			if end {
				return nil, fmt.Errorf("dict key %q has no value", key)
			}
			dict[key] = v
		}
	}
	return nil, fmt.Errorf("unexpected element <%s>", se.Name.Local)
}

func TestLaunchdPlist(t *testing.T) {
	const path = "darwin/com.meshnode.meshnode.plist"
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	v, err := decodePlist(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	got, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: top level is %T, want a dict", path, v)
	}
	want := map[string]any{
		"Label": "com.meshnode.meshnode",
		"ProgramArguments": []any{
			"/usr/local/bin/meshnode", "up", "--config", "/usr/local/etc/meshnode/meshnode.yaml",
		},
		"RunAtLoad":         true,
		"KeepAlive":         map[string]any{"SuccessfulExit": false},
		"StandardOutPath":   "/var/log/meshnode.log",
		"StandardErrorPath": "/var/log/meshnode.log",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s decodes to\n%#v\nwant\n%#v", path, got, want)
	}
}

func TestDecodePlistRejects(t *testing.T) {
	tests := []struct {
		name, doc string
	}{
		{"not a plist", `<dict></dict>`},
		{"unclosed", `<plist><dict><key>Label</key><string>x</string>`},
		{"key without value", `<plist><dict><key>Label</key></dict></plist>`},
		{"unknown element", `<plist><dict><key>A</key><real>1.5</real></dict></plist>`},
		{"bad integer", `<plist><dict><key>A</key><integer>ten</integer></dict></plist>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v, err := decodePlist(strings.NewReader(tt.doc)); err == nil {
				t.Errorf("decodePlist(%q) = %#v, want an error", tt.doc, v)
			}
		})
	}
}
