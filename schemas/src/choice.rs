//! XML choices (`xs:choice`) that serialize the same way in XML and JSON.
//!
//! quick-xml cannot put a newtype enum variant in an ordinary field, and its `$value` trick
//! leaks into JSON. A choice is therefore written as a struct with exactly one field whose
//! name is the variant's element name: `<body><transferApply>…</transferApply></body>` in XML,
//! `"body": {"transferApply": {…}}` in JSON.

/// Declares an enum whose variants each wrap one type, serialized as a one-field struct keyed
/// by the element name.
macro_rules! xml_choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident as $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident($ty:ty) = $elem:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($ty), )+
        }

        impl $name {
            /// Element names of the variants, in declaration order.
            pub const ELEMENTS: &'static [&'static str] = &[$($elem),+];

            /// The element name of this variant.
            pub fn element(&self) -> &'static str {
                match self { $($name::$variant(_) => $elem,)+ }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use ::serde::ser::SerializeStruct;
                let mut st = s.serialize_struct(stringify!($name), 1)?;
                match self {
                    $($name::$variant(v) => st.serialize_field($elem, v)?,)+
                }
                st.end()
            }
        }

        impl ::schemars::JsonSchema for $name {
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            /// Exactly one property, named by the element: `{"transferApply": {…}}`.
            fn json_schema(generator: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                let one_of: Vec<::schemars::Schema> = vec![$(
                    ::schemars::json_schema!({
                        "type": "object",
                        "properties": { $elem: generator.subschema_for::<$ty>() },
                        "required": [$elem],
                        "additionalProperties": false,
                    }),
                )+];
                ::schemars::json_schema!({ "description": $what, "oneOf": one_of })
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> ::serde::de::Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_map<A: ::serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        use ::serde::de::Error;
                        let key: String = map
                            .next_key()?
                            .ok_or_else(|| A::Error::custom(concat!("empty ", $what)))?;
                        let value = match key.as_str() {
                            $($elem => $name::$variant(map.next_value()?),)+
                            other => return Err(A::Error::unknown_field(other, $name::ELEMENTS)),
                        };
                        if let Some(extra) = map.next_key::<String>()? {
                            return Err(A::Error::custom(format!(concat!("more than one element in ", $what, ": {}"), extra)));
                        }
                        Ok(value)
                    }
                }
                d.deserialize_struct(stringify!($name), $name::ELEMENTS, V)
            }
        }
    };
}
pub(crate) use xml_choice;
