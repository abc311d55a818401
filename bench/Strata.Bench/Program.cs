using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(Strata.Bench.TarReadBenchmarks).Assembly).Run(args);
