using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Strata.Core;
using Strata.Core.Containers;
using Strata.Core.Images;

namespace Strata.Cli;

/// <summary>JSON as the CLI prints it: indented, enums by name. Source-generated, as the CLI is compiled ahead of
/// time: every type that a printed document holds, also as an <c>object</c> value of a dictionary, is listed
/// here by its run-time type (one missing fails that command at run time, with the type named).</summary>
[JsonSourceGenerationOptions(WriteIndented = true, UseStringEnumConverter = true)]
[JsonSerializable(typeof(Dictionary<string, object>))]
[JsonSerializable(typeof(List<Dictionary<string, object>>))]
[JsonSerializable(typeof(Layer))]
[JsonSerializable(typeof(List<Layer>))]
[JsonSerializable(typeof(ImageRecord))]
[JsonSerializable(typeof(List<ImageRecord>))]
[JsonSerializable(typeof(Container))]
[JsonSerializable(typeof(ProcessConfig))]
[JsonSerializable(typeof(Dictionary<string, string>))]
[JsonSerializable(typeof(JsonNode))]
[JsonSerializable(typeof(JsonObject))]
[JsonSerializable(typeof(JsonArray))]
[JsonSerializable(typeof(string[][]))]
[JsonSerializable(typeof(string[]))]
[JsonSerializable(typeof(string))]
[JsonSerializable(typeof(int))]
[JsonSerializable(typeof(bool))]
[JsonSerializable(typeof(double))]
[JsonSerializable(typeof(DateTimeOffset))]
[JsonSerializable(typeof(long))]
[JsonSerializable(typeof(Strata.Thin.Space.ScrubReport))]
[JsonSerializable(typeof(Strata.Thin.PoolStats))]
[JsonSerializable(typeof(Strata.Thin.Space.SpaceActivity))]
sealed partial class CliJson : JsonSerializerContext;
