namespace Headlight.Models.Loading;

/// <summary>The labels LABEL_0 … LABEL_{n−1} that Hugging Face gives a classifier without id2label, each made when read.</summary>
internal sealed class PlaceholderLabels(int count) : IReadOnlyList<string>
{
    public int Count => count;

    public string this[int index] => (uint)index < (uint)count
        ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"LABEL_{index}")
        : throw new ArgumentOutOfRangeException(nameof(index), index, $"labels are 0 to {count - 1}");

    public IEnumerator<string> GetEnumerator()
    {
        for (int i = 0; i < count; i++)
        {
            yield return this[i];
        }
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
