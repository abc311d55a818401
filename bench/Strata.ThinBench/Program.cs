using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(Strata.ThinBench.IoBenchmarks).Assembly).Run(args);
