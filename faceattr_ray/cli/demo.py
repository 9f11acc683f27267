"""`faceattr-ray demo`: the README's first command (`faceattr_ray.demo`), and what it found."""

from __future__ import annotations


def run(args) -> int:
    from faceattr_ray.demo import demo, summarize_table

    d = demo(args.out, args.images, args.seed, args.address, args.num_cpus, train=args.train)
    summary, output = d["summary"], d["output"]
    print()
    print("\n".join(summarize_table(output)))
    print()
    print(f"{summary['images']} images: {summary['faces']} faces, {summary['no_face']} with no "
          f"face, {summary['errors']} errors ({summary['rows']} rows)")
    print(f"model    {d['model']}  ({d['about']})")
    print(f"table    {output}  (Parquet; pandas.read_parquet('{output}'))")
    print(f"overlay  {d['overlay']}")
    print(f"done in {d['seconds']:.0f} s "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in d['stage_seconds'].items())})")
    return 0
