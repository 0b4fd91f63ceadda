"""Cross-D Conv: 2D kernels transferred to 3D."""

import torch
import torch.nn.functional as F

from zoo.operators.cross_d_conv import CrossDConv


def test_inflated_kernel_reproduces_the_2d_response_on_a_constant_in_depth_input():
    torch.manual_seed(0)
    conv = CrossDConv(3, 5, kernel_size=3, depth_kernel=3)
    image = torch.randn(2, 3, 12, 12)
    volume = image[:, :, None].expand(-1, -1, 7, -1, -1)  # constant along depth
    response2d = conv(image)
    response3d = conv(volume)
    # away from the depth borders (zero padding there), every depth slice is the 2D response
    for d in range(1, 6):
        torch.testing.assert_close(response3d[:, :, d], response2d, rtol=1e-4, atol=1e-5)


def test_an_integer_shift_moves_the_kernel_by_whole_pixels():
    torch.manual_seed(0)
    conv = CrossDConv(1, 1, kernel_size=5, depth_kernel=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 2, 2] = 1
        conv.shifts[0, 0] = torch.tensor([1.0, 0.0])  # one pixel down
    kernel = conv.kernel3d()[0, 0, 0]
    assert kernel[3, 2] > 0.999 and kernel.abs().sum() < 1.001


def test_shifts_are_learned_from_3d_data():
    torch.manual_seed(0)
    conv = CrossDConv(2, 2, kernel_size=3, depth_kernel=3)
    F.mse_loss(conv(torch.randn(1, 2, 4, 8, 8)), torch.randn(1, 2, 4, 8, 8)).backward()
    assert conv.shifts.grad.abs().sum() > 0
