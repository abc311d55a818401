using System.Text.Json;
using Json.Schema;

namespace Strata.Integration.Tests;

/// <summary>The JSON schemas of the CLI's outputs (docs/schemas, one per kind of object), for checking what commands print.</summary>
static class JsonSchemas
{
    static readonly Lazy<Dictionary<string, JsonSchema>> s_schemas = new(Load);

    static Dictionary<string, JsonSchema> Load()
    {
        string dir = Path.Combine(RepoRoot(), "docs", "schemas");
        var options = new BuildOptions { SchemaRegistry = new SchemaRegistry() };
        var built = new Dictionary<string, JsonSchema>();
        // the objects first: the inspect documents refer to them
        foreach (var file in Directory.GetFiles(dir, "*.json").OrderBy(f => f.Contains("-inspect", StringComparison.Ordinal)).ThenBy(f => f, StringComparer.Ordinal))
        {
            var schema = JsonSchema.FromText(File.ReadAllText(file), options);
            options.SchemaRegistry.Register(schema);
            built[Path.GetFileNameWithoutExtension(file)] = schema;
        }
        return built;
    }

    /// <summary>Asserts that <paramref name="json"/> is valid against schema <paramref name="kind"/> (layer, image-inspect, ...);
    /// <paramref name="array"/>: a JSON array of such objects, each checked.</summary>
    public static void AssertValid(string kind, string json, bool array = false)
    {
        var schema = s_schemas.Value[kind];
        using var doc = JsonDocument.Parse(json);
        var items = array ? doc.RootElement.EnumerateArray().ToList() : [doc.RootElement];
        if (array) Assert.Equal(JsonValueKind.Array, doc.RootElement.ValueKind);
        foreach (var item in items)
        {
            var result = schema.Evaluate(item, new EvaluationOptions { OutputFormat = OutputFormat.List, RequireFormatValidation = true });
            Assert.True(result.IsValid, $"{kind}: {string.Join("; ", (result.Details ?? []).Where(d => d.Errors is not null).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}")))}\n{item}");
        }
    }

    public static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Strata.slnx"))) return dir.FullName;
        throw new InvalidOperationException($"no Strata.slnx above {AppContext.BaseDirectory}");
    }
}
