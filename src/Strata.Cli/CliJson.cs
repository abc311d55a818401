using System.Text.Json;
using System.Text.Json.Serialization;

namespace Strata.Cli;

/// <summary>JSON as the CLI prints it: indented, enums by name.</summary>
static class CliJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter() },
        TypeInfoResolver = new System.Text.Json.Serialization.Metadata.DefaultJsonTypeInfoResolver(),
    };
}
