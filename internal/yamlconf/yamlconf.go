// Package yamlconf decodes YAML configuration strictly: a key the target
// struct does not define, a duplicated key or a value of the wrong kind is an
// error naming the key's full path and line, e.g.
//
//	line 4: storage.retention: unknown unit "x" in duration "15x"
//	line 7: unknown key "retension" in storage
//
// Keys absent from the document leave the target's existing (default) values alone.
package yamlconf

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Decode decodes the YAML document b into out, which must be a pointer to a struct.
func Decode(b []byte, out any) error {
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return errors.New("yamlconf: out must be a non-nil pointer")
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // empty document: keep the defaults
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	return decode(root, v.Elem(), "")
}

var (
	unmarshalerV3  = reflect.TypeFor[yaml.Unmarshaler]()
	unmarshalerOld = reflect.TypeFor[interface{ UnmarshalYAML(func(any) error) error }]()
	textUnmarsh    = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// custom reports whether t decodes itself, in which case it is decoded whole.
func custom(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return pt.Implements(unmarshalerV3) || pt.Implements(unmarshalerOld) || pt.Implements(textUnmarsh)
}

func decode(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	t := v.Type()
	if t.Kind() == reflect.Pointer && !custom(t) {
		if n.Tag == "!!null" {
			v.Set(reflect.Zero(t))
			return nil
		}
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		return decode(n, v.Elem(), path)
	}
	if t.Kind() == reflect.Struct && !custom(t) {
		return decodeStruct(n, v, path)
	}
	if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct && !custom(t) && !custom(t.Elem()) {
		if n.Tag == "!!null" {
			v.Set(reflect.Zero(t))
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("line %d: %s: expected a list", n.Line, name(path))
		}
		out := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := decode(item, out.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(out)
		return nil
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		return fmt.Errorf("line %d: %s: %s", n.Line, name(path), cleanError(err))
	}
	return nil
}

func decodeStruct(n *yaml.Node, v reflect.Value, path string) error {
	if n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s: expected a mapping of keys to values, got %s", n.Line, name(path), describe(n))
	}
	fields := fieldsOf(v)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		if line, dup := seen[key]; dup {
			return fmt.Errorf("line %d: key %q in %s is already set on line %d", k.Line, key, name(path), line)
		}
		seen[key] = k.Line
		f, ok := fields[key]
		if !ok {
			return fmt.Errorf("line %d: unknown key %q in %s (known keys: %s)", k.Line, key, name(path), strings.Join(knownKeys(v), ", "))
		}
		if err := decode(val, f, join(path, key)); err != nil {
			return err
		}
	}
	return nil
}

// fieldsOf maps each yaml key of a struct (following ",inline" fields) to its field.
func fieldsOf(v reflect.Value) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("yaml")
		keyName, opts, _ := strings.Cut(tag, ",")
		if keyName == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, f := range fieldsOf(v.Field(i)) {
				out[k] = f
			}
			continue
		}
		if keyName == "" {
			keyName = strings.ToLower(sf.Name)
		}
		out[keyName] = v.Field(i)
	}
	return out
}

func knownKeys(v reflect.Value) []string {
	var keys []string
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		keyName, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		switch {
		case !sf.IsExported() || keyName == "-":
		case strings.Contains(opts, "inline"):
			keys = append(keys, knownKeys(v.Field(i))...)
		case keyName == "":
			keys = append(keys, strings.ToLower(sf.Name))
		default:
			keys = append(keys, keyName)
		}
	}
	return keys
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func name(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// cleanError drops yaml.v3's "yaml: unmarshal errors:\n  line N: " framing,
// since the caller names the line and key itself.
func cleanError(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if _, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(msg, "line ") {
			msg = rest
		}
		return msg
	}
	return err.Error()
}
